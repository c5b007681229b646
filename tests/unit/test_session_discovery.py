"""What `dyadsync streams` prints, from stream metadata (no network)."""

from __future__ import annotations

from dataclasses import replace

from streamer.devices import StreamMeta
from streamer.discovery import format_streams
from streamer.session import parse_session

SIM_DESC = {"acquisition/manufacturer": "dyadsync", "acquisition/model": "simulator"}


def _sim(role: str, signal: str) -> StreamMeta:
    return StreamMeta(
        name=f"dyadsync-sim-{role}-{signal}", type=signal.upper(),
        source_id=f"lab-{role}-{signal}", uid=f"{role}{signal}", hostname="pc1",
        channel_count=2, nominal_srate_hz=256.0 if signal == "ecg" else 32.0,
        channel_format="double64", desc={**SIM_DESC, "dyadsync/role": role}, has_desc=True,
        channel_labels=(signal.upper(), "counter"),
    )  # fmt: skip


def _session():
    return parse_session(
        {
            "session": {"room": "lab", "signals": ["ecg", "eda"]},
            "therapist": {
                "ecg": {"device": "dyadsync_simulator", "source_id": "lab-therapist-ecg"},
                "eda": {"device": "dyadsync_simulator", "source_id": "lab-therapist-eda"},
            },
            "client": {
                "ecg": {"device": "polar_h10", "name": "Polar H10 *"},
                "eda": {"device": "dyadsync_simulator", "source_id": "lab-client-eda"},
            },
        },
        source="lab.toml",
    )


def test_table_without_session_lists_streams_and_configs() -> None:
    eeg = StreamMeta(name="eeg", type="EEG", source_id="", channel_count=8)
    text = format_streams([_sim("therapist", "ecg"), eeg], None)
    lines = text.splitlines()
    assert lines[0] == "2 LSL stream(s) visible:"
    assert lines[1].split() == [
        "name", "type", "source_id", "host", "ch", "rate_hz", "device", "config", "role",
    ]  # fmt: skip
    sim_row = next(line for line in lines if line.startswith("dyadsync-sim"))
    assert "dyadsync_simulator:ecg" in sim_row and "generic" not in sim_row
    assert sim_row.endswith("therapist (declared)")
    eeg_row = next(line for line in lines if line.startswith("eeg"))
    assert "(no config matches)" in eeg_row
    assert len(lines) == 4  # no session report without a session


def test_session_report_ok_missing_unusable_ambiguous() -> None:
    bad_eda = replace(_sim("therapist", "eda"), channel_count=3)
    polar_a = StreamMeta(
        name="Polar H10 A",
        type="ECG",
        source_id="a",
        uid="pa",
        channel_count=1,
        nominal_srate_hz=130.0,
        channel_format="float32",
    )
    polar_b = replace(polar_a, name="Polar H10 B", uid="pb")
    text = format_streams([_sim("therapist", "ecg"), bad_eda, polar_a, polar_b], _session())
    assert "session lab.toml (room 'lab'):" in text
    assert "ok         therapist ecg: 'dyadsync-sim-therapist-ecg'" in text
    assert "UNUSABLE   therapist eda: stream has 3 channels, expected 2" in text
    assert "AMBIGUOUS  client ecg: 2 streams match (Polar H10 A, Polar H10 B)" in text
    assert "MISSING    client eda: device 'dyadsync_simulator', source_id='lab-client-eda'" in text
    assert "dyadsync simulate" in text
    sim_row = next(
        line for line in text.splitlines() if line.startswith("dyadsync-sim-therapist-ecg")
    )
    assert sim_row.endswith("therapist ecg")


def test_complete_session_says_so() -> None:
    polar = StreamMeta(name="Polar H10 C", type="ECG", source_id="c", channel_count=1,
                       nominal_srate_hz=130.0, channel_format="float32")  # fmt: skip
    metas = [_sim("therapist", "ecg"), _sim("therapist", "eda"), _sim("client", "eda"), polar]
    text = format_streams(metas, _session())
    assert text.endswith("All streams of the session are present.")
    assert "MISSING" not in text and "dyadsync simulate" not in text
