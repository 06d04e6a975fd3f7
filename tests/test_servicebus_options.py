"""The Service Bus trigger's settings, connections and error lines, from tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
)

from local.host.errors import HostError, IndexingError
from local.host.indexing import Binding, IndexedFunction
from local.host.triggers.servicebus_client import explain_error, is_permanent
from local.host.triggers.servicebus_options import RetryOptions, ServiceBusTriggerOptions, ignored_settings
from shared.platform.servicebus_connection import (
    ConnectionSettingError,
    ServiceBusConnection,
    resolve_connection,
)

CONNECTION_STRING = (
    "Endpoint=sb://tasklane.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0"
)


def trigger(**values: Any) -> IndexedFunction:
    binding = Binding("msg", "serviceBusTrigger", "IN", {"connection": "ServiceBusConnection", **values})
    return IndexedFunction("process", binding, (binding,), lambda msg: None, Path("."))


def test_options_default_to_the_extensions_defaults() -> None:
    options = ServiceBusTriggerOptions.from_function(trigger(queueName="tasks"), {})

    assert (options.queue_name, options.many, options.auto_complete) == ("tasks", False, True)
    assert options.prefetch_count == 0
    assert options.max_concurrent_calls == 16 * (os.cpu_count() or 1)
    assert options.max_message_batch_size == 1000
    assert options.max_auto_lock_renewal == 300.0
    assert options.retry == RetryOptions()


@pytest.mark.parametrize(
    ("binding", "host", "expected"),
    [
        (
            {"cardinality": "MANY"},
            {"prefetchCount": 5, "maxMessageBatchSize": 50, "autoCompleteMessages": False},
            {"many": True, "prefetch_count": 5, "max_message_batch_size": 50, "auto_complete": False},
        ),
        (
            {},
            {"maxConcurrentCalls": 4, "maxAutoLockRenewalDuration": "00:10:00"},
            {"max_concurrent_calls": 4, "max_auto_lock_renewal": 600.0},
        ),
        ({}, {"PrefetchCount": 3, "MAXCONCURRENTCALLS": 2}, {"prefetch_count": 3, "max_concurrent_calls": 2}),
        ({"autoCompleteMessages": "true"}, {"autoCompleteMessages": False}, {"auto_complete": True}),
        (
            {},
            {
                "messageHandlerOptions": {
                    "maxConcurrentCalls": 8,
                    "maxAutoRenewDuration": "00:01:00",
                    "autoComplete": False,
                }
            },
            {"max_concurrent_calls": 8, "max_auto_lock_renewal": 60.0, "auto_complete": False},
        ),
        (
            {"cardinality": "many"},
            {"batchOptions": {"maxMessageCount": 20, "autoComplete": False}},
            {"max_message_batch_size": 20, "auto_complete": False},
        ),
        (
            {},
            {"maxConcurrentCalls": 6, "messageHandlerOptions": {"maxConcurrentCalls": 8}},
            {"max_concurrent_calls": 6},
        ),
        ({}, {"transportType": "amqpWebSockets"}, {"websockets": True}),
        (
            {},
            {
                "clientRetryOptions": {
                    "mode": "Fixed",
                    "maxRetries": 5,
                    "delay": "00:00:02",
                    "tryTimeout": "00:00:10",
                }
            },
            {"retry": RetryOptions(mode="fixed", max_retries=5, delay=2.0, max_delay=60.0, try_timeout=10.0)},
        ),
    ],
)
def test_options_from_binding_and_host_json(
    binding: dict[str, Any], host: dict[str, Any], expected: dict[str, Any]
) -> None:
    options = ServiceBusTriggerOptions.from_function(trigger(queueName="tasks", **binding), host)
    assert {name: getattr(options, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("binding", "host", "error"),
    [
        ({"queueName": "tasks", "isSessionsEnabled": True}, {}, "session-enabled entities are not supported"),
        ({"queueName": "tasks", "cardinality": "some"}, {}, "cardinality 'some'"),
        ({"topicName": "events"}, {}, "queueName, or topicName and subscriptionName"),
        ({"queueName": "tasks"}, {"maxConcurrentCalls": 0}, r"serviceBus\.maxConcurrentCalls=0"),
        ({"queueName": "tasks"}, {"prefetchCount": "many"}, r"serviceBus\.prefetchCount='many'"),
        ({"queueName": "tasks"}, {"maxAutoLockRenewalDuration": "5 minutes"}, "maxAutoLockRenewalDuration"),
    ],
)
def test_unusable_options_name_the_setting(binding: dict[str, Any], host: dict[str, Any], error: str) -> None:
    with pytest.raises((HostError, IndexingError), match=error):
        ServiceBusTriggerOptions.from_function(trigger(**binding), host)


def test_a_topic_subscription_is_described_by_both_names() -> None:
    options = ServiceBusTriggerOptions.from_function(
        trigger(topicName="events", subscriptionName="audit"), {}
    )
    assert options.entity == "topic events, subscription audit"


@pytest.mark.parametrize(
    ("host", "ignored"),
    [
        (
            {"minMessageBatchSize": 10, "maxBatchWaitTime": "00:00:30"},
            ["minMessageBatchSize", "maxBatchWaitTime"],
        ),
        ({"minMessageBatchSize": 1, "prefetchCount": 4}, []),
    ],
)
def test_settings_the_host_does_not_act_on_are_named(host: dict[str, Any], ignored: list[str]) -> None:
    assert ignored_settings(host) == ignored


NAMESPACE = "tasklane.servicebus.windows.net"


@pytest.mark.parametrize(
    ("environ", "name", "expected"),
    [
        (
            {"ServiceBusConnection": CONNECTION_STRING},
            "ServiceBusConnection",
            ("ServiceBusConnection", "connection_string"),
        ),
        (
            {
                "AzureWebJobsServiceBusConnection": CONNECTION_STRING,
                "ServiceBusConnection": "Endpoint=sb://other/",
            },
            "ServiceBusConnection",
            ("AzureWebJobsServiceBusConnection", "connection_string"),
        ),
        ({"ConnectionStrings:Bus": CONNECTION_STRING}, "Bus", ("Bus", "connection_string")),
        (
            {"AzureWebJobsServiceBus": CONNECTION_STRING},
            "ServiceBus",
            ("AzureWebJobsServiceBus", "connection_string"),
        ),
        (
            {"ServiceBusConnection__fullyQualifiedNamespace": NAMESPACE},
            "ServiceBusConnection",
            ("ServiceBusConnection", "default"),
        ),
        (
            {"servicebusconnection__FULLYQUALIFIEDNAMESPACE": NAMESPACE},
            "ServiceBusConnection",
            ("ServiceBusConnection", "default"),
        ),
        (
            {"ServiceBusConnection:fullyQualifiedNamespace": NAMESPACE},
            "ServiceBusConnection",
            ("ServiceBusConnection", "default"),
        ),
        (
            {
                "ServiceBusConnection__fullyQualifiedNamespace": NAMESPACE,
                "ServiceBusConnection__credential": "managedidentity",
                "ServiceBusConnection__clientId": "5a1c-client",
            },
            "ServiceBusConnection",
            ("ServiceBusConnection", "managed_identity"),
        ),
        (
            {
                "ServiceBusConnection__fullyQualifiedNamespace": NAMESPACE,
                "ServiceBusConnection__tenantId": "tenant",
                "ServiceBusConnection__clientId": "5a1c-client",
                "ServiceBusConnection__clientSecret": "s3cret",
            },
            "ServiceBusConnection",
            ("ServiceBusConnection", "client_secret"),
        ),
    ],
)
def test_connection_string_or_identity(environ: dict[str, str], name: str, expected: tuple[str, str]) -> None:
    connection = resolve_connection(environ, name)

    assert (connection.setting, connection.kind) == expected
    assert connection.namespace == NAMESPACE
    assert "c2VjcmV0" not in repr(connection)
    assert "s3cret" not in repr(connection)


def test_a_managed_identity_keeps_its_client_id() -> None:
    connection = resolve_connection(
        {
            "Bus__fullyQualifiedNamespace": NAMESPACE,
            "Bus__credential": "ManagedIdentity",
            "Bus__clientId": "5a1c-client",
        },
        "Bus",
    )
    assert (connection.kind, connection.client_id) == ("managed_identity", "5a1c-client")


@pytest.mark.parametrize(
    ("environ", "error"),
    [
        ({}, "'ServiceBusConnection' does not exist"),
        ({"ServiceBusConnection": "  "}, "fullyQualifiedNamespace"),
        (
            {"ServiceBusConnection__clientId": "5a1c-client"},
            "'ServiceBusConnection__fullyQualifiedNamespace'",
        ),
        (
            {
                "ServiceBusConnection__fullyQualifiedNamespace": NAMESPACE,
                "ServiceBusConnection__credential": "certificate",
            },
            "credential='certificate' is not supported",
        ),
    ],
)
def test_an_unusable_connection_names_the_setting(environ: dict[str, str], error: str) -> None:
    with pytest.raises(ConnectionSettingError, match=error):
        resolve_connection(environ, "ServiceBusConnection")


OPTIONS = ServiceBusTriggerOptions.from_function(trigger(queueName="tasks"), {})
CONNECTION = ServiceBusConnection("ServiceBusConnection", "default", fully_qualified_namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("error", "permanent", "says"),
    [
        (MessagingEntityNotFoundError(message="gone"), True, f"queue tasks does not exist in {NAMESPACE}"),
        (ServiceBusAuthorizationError(message="denied"), True, "'Azure Service Bus Data Receiver' role"),
        (ClientAuthenticationError("no managed identity endpoint"), True, "no token for"),
        (
            ValueError("Connection string is either blank or malformed."),
            True,
            "'ServiceBusConnection' cannot be used",
        ),
        (
            ServiceBusConnectionError(message="reset"),
            False,
            f"queue tasks in {NAMESPACE} (connection 'ServiceBusConnection')",
        ),
    ],
)
def test_sdk_errors_say_what_to_fix(error: Exception, permanent: bool, says: str) -> None:
    assert is_permanent(error) is permanent
    assert says in explain_error(error, OPTIONS, CONNECTION)
