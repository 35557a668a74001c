"""Alertmanager v4 payload validation: typed alerts in, one clear 4xx for anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdoctor.serve.payload import PayloadError, parse_notification, parse_time
from tests.serve.stack import am_alert, am_payload


def body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def refused(payload: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse_notification(payload)
    return caught.value


def test_a_real_alertmanager_payload_parses_to_typed_alerts() -> None:
    firing = am_alert(starts_at=1_700_000_000.25)
    resolved = am_alert(status="resolved", starts_at=1_700_000_000.25, ends_at=1_700_000_600.5)
    notification = parse_notification(body(am_payload([firing, resolved])))
    first, second = notification.alerts
    assert first.firing and first.instance == "incident:9100" and first.name == "NetdoctorConntrackTableNearlyFull"
    assert first.starts_at == pytest.approx(1_700_000_000.25)
    assert first.ends_at is None  # Go's zero time means "no end yet"
    assert second.status == "resolved" and second.ends_at == pytest.approx(1_700_000_600.5)
    assert notification.receiver == "netdoctor"


def test_rfc3339_nanoseconds_and_offsets() -> None:
    assert parse_time("2023-11-14T22:13:20.123456789Z", "t") == pytest.approx(1_700_000_000.123456789)
    assert parse_time("2023-11-14T23:13:20+01:00", "t") == pytest.approx(1_700_000_000.0)
    assert parse_time("0001-01-01T00:00:00Z", "t") is None


def test_missing_fingerprint_falls_back_to_a_hash_of_the_labels() -> None:
    one = parse_notification(body(am_payload([am_alert(fingerprint=None)]))).alerts[0]
    two = parse_notification(body(am_payload([am_alert(fingerprint=None)]))).alerts[0]
    other = parse_notification(body(am_payload([am_alert("Other", fingerprint=None)]))).alerts[0]
    assert one.fingerprint == two.fingerprint != other.fingerprint
    assert len(one.fingerprint) == 16


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        (b"{not json", 400, "not JSON"),
        (b"\xff\xfe", 400, "not UTF-8"),
        (body([1, 2]), 422, "JSON object"),
        (body({**am_payload([am_alert()]), "version": "3"}), 422, "version"),
        (body({**am_payload([]), "alerts": "x"}), 422, "alerts"),
        (body(am_payload([{**am_alert(), "status": "pending"}])), 422, "status"),
        (body(am_payload([{**am_alert(), "startsAt": "yesterday"}])), 422, "RFC 3339"),
        (body(am_payload([{**am_alert(), "labels": {"instance": 5}}])), 422, "string"),
        (body(am_payload([{**am_alert(), "labels": {"bad-name": "x", "instance": "a:1"}}])), 422, "label name"),
        (body(am_payload([am_alert(extra_labels={"job": "a\nb"})])), 422, "control"),
        (body(am_payload([am_alert(instance="")])), 422, "no instance"),
        (body(am_payload([am_alert(fingerprint="../../x")])), 422, "fingerprint"),
    ],
)
def test_malformed_payloads_get_a_clear_4xx(payload: bytes, status: int, says: str) -> None:
    error = refused(payload)
    assert error.status == status
    assert says in error.message


@pytest.mark.parametrize(
    "instance",
    [
        'x"} or vector(1) #',  # PromQL injection: would close the matcher
        "../../etc/passwd",  # path traversal
        "host name with spaces",
        "a{b}",
        "x\\y",
    ],
)
def test_an_instance_that_cannot_be_a_scrape_target_is_refused(instance: str) -> None:
    error = refused(body(am_payload([am_alert(instance=instance)])))
    assert error.status == 422 and "instance" in error.message


@pytest.mark.parametrize("instance", ["node1", "node1.example.com:9100", "10.0.0.1:9100", "[fe80::1%eth0]:9100"])
def test_ordinary_targets_are_accepted(instance: str) -> None:
    assert parse_notification(body(am_payload([am_alert(instance=instance)]))).alerts[0].instance == instance


def test_a_payload_is_refused_as_a_whole() -> None:
    error = refused(body(am_payload([am_alert(), am_alert(instance='x"')])))
    assert "alerts[1]" in error.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_parse_or_payload_error(data: bytes) -> None:
    try:
        parse_notification(data)
    except PayloadError as exc:
        assert 400 <= exc.status < 500


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["labels", "annotations", "startsAt", "endsAt", "fingerprint", "status"]))
def test_fuzz_alert_fields_parse_or_payload_error(value: object, key: str) -> None:
    alert = {**am_alert(), key: value}
    try:
        parse_notification(body(am_payload([alert])))
    except PayloadError as exc:
        assert exc.status == 422
