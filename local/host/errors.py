"""Errors the host raises; each says what is wrong and where."""


class HostError(Exception):
    """Base class for errors of the local host."""


class AppLoadError(HostError):
    """The app's script could not be imported or holds no usable FunctionApp."""


class IndexingError(HostError):
    """One function's bindings cannot be used (unknown setting, unsupported trigger...)."""

    def __init__(self, function_name: str, reason: str) -> None:
        super().__init__(f"Error indexing function '{function_name}': {reason}")
        self.function_name = function_name
        self.reason = reason


class SettingNotFoundError(HostError):
    """A ``%Setting%`` binding expression or connection names a setting that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"'%{name}%' does not resolve to a value: set '{name}' in the environment or local settings"
        )
        self.name = name


class FunctionFailedError(HostError):
    """The user's function raised; the traceback went to the log under this invocation id."""

    def __init__(self, function_name: str, invocation_id: str) -> None:
        super().__init__(f"Executed 'Functions.{function_name}' (Failed, Id={invocation_id})")
        self.function_name = function_name
        self.invocation_id = invocation_id


class ListenerUnavailableError(HostError):
    """A trigger's server cannot be reached yet; the host keeps serving and retries the listener.

    Anything else a listener raises at start (a wrong setting, refused credentials) is a
    configuration no retry can fix, and stops the host.
    """
