"""`dyadsync streams` over real LSL: visible streams, their device config and session role,
and what the session is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamer.discovery import describe_streams
from streamer.session import parse_session
from tests.integration.lsl_outlet_proc import OutletProcess, unique_source_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def polar_and_e4() -> Iterator[tuple[str, str]]:
    polar_sid, e4_sid = unique_source_id("polar"), unique_source_id("e4")
    outlets = [
        OutletProcess(polar_sid, name="Polar H10 DISC", type="ECG", channels=1, rate=130,
                      chunk=73, counter_channel=-1),
        OutletProcess(e4_sid, name="E4_Gsr", type="GSR", channels=1, rate=4, chunk=1,
                      counter_channel=-1),
    ]  # fmt: skip
    try:
        yield polar_sid, e4_sid
    finally:
        for outlet in outlets:
            outlet.close()


def test_streams_table_names_config_role_and_what_is_missing(polar_and_e4) -> None:
    polar_sid, e4_sid = polar_and_e4
    session = parse_session(
        {
            "session": {"room": "r1", "signals": ["ecg", "eda"]},
            "therapist": {
                "ecg": {"device": "polar_h10", "source_id": polar_sid},
                "eda": {"device": "empatica_e4", "source_id": e4_sid},
            },
            "client": {
                "ecg": {"device": "polar_h10", "source_id": polar_sid + "-absent"},
                "eda": {"device": "empatica_e4", "source_id": e4_sid + "-absent"},
            },
        },
        source="disc.toml",
    )
    report = describe_streams(session, timeout_s=1.0)
    text = report.text
    polar_row = next(line for line in text.splitlines() if polar_sid in line and "Polar" in line)
    assert "polar_h10:ecg" in polar_row and "therapist ecg" in polar_row
    assert "generic" not in polar_row  # the specific config wins over the catch-all
    e4_row = next(
        line for line in text.splitlines() if line.startswith("E4_Gsr") and e4_sid in line
    )
    assert "empatica_e4:eda" in e4_row and "therapist eda" in e4_row
    assert "ok         therapist ecg" in text and "ok         therapist eda" in text
    assert f"MISSING    client ecg: device 'polar_h10', source_id='{polar_sid}-absent'" in text
    assert "MISSING    client eda" in text and "dyadsync simulate" in text
    assert not report.session_ready
