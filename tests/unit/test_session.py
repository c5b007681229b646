"""Session TOML: who sits where with which device, which signals, synchrony settings; every
error names the file, the key, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsp.exceptions import ConfigError
from dsp.types import Role, SignalKind
from streamer.session import load_session, simulator_session

GOOD = """\
[session]
room = "room-2"
signals = ["ecg", "eda"]

[therapist.ecg]
device = "polar_h10"
source_id = "polar-A1"
[therapist.eda]
device = "empatica_e4"
source_id = "e4-A1"
[client.ecg]
device = "polar_h10"
name = "Polar H10 B2*"
[client.eda]
device = "mydevice.toml"
source_id = "custom-7"

[synchrony]
window_s = 20
lag_s = 4.0
step_s = 0.5
grid_hz = 8
z_cap = 8.0
"""

MY_DEVICE = """\
[device]
manufacturer = "lab"
model = "home-made"
[signals.eda]
channel_index = 0
unit = "kOhm"
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mydevice.toml").write_text(MY_DEVICE, encoding="utf-8")
    path = tmp_path / "session.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_session_loads(tmp_path) -> None:
    session = load_session(_write(tmp_path, GOOD))
    assert session.room == "room-2"
    assert session.signals == (SignalKind.ECG, SignalKind.EDA)
    therapist_ecg = session.sensor(Role.THERAPIST, SignalKind.ECG)
    assert therapist_ecg.device.name == "polar_h10" and therapist_ecg.source_id == "polar-A1"
    client_ecg = session.sensor(Role.CLIENT, SignalKind.ECG)
    assert client_ecg.source_id is None and client_ecg.name_pattern == "Polar H10 B2*"
    assert session.sensor(Role.CLIENT, SignalKind.EDA).device.name == "mydevice"
    assert dict(session.synchrony) == {
        "window_s": 20.0, "lag_s": 4.0, "step_s": 0.5, "grid_hz": 8.0, "z_cap": 8.0,
    }  # fmt: skip
    with pytest.raises(TypeError):
        session.synchrony["window_s"] = 1.0  # type: ignore[index]


def test_defaults_and_single_signal(tmp_path) -> None:
    text = (
        '[session]\nsignals = ["eda"]\n'
        '[therapist.eda]\ndevice = "emotibit"\nsource_id = "a"\n'
        '[client.eda]\ndevice = "emotibit"\nsource_id = "b"\n'
    )
    session = load_session(_write(tmp_path, text))
    assert session.signals == (SignalKind.EDA,) and len(session.sensors) == 2
    assert dict(session.synchrony) == {
        "window_s": 30.0,
        "lag_s": 5.0,
        "step_s": 1.0,
        "grid_hz": 4.0,
    }


def test_simulator_session_describes_the_four_simulator_streams() -> None:
    session = simulator_session("lab-sim")
    ids = {(s.role, s.signal): s.source_id for s in session.sensors}
    assert ids == {
        (Role.THERAPIST, SignalKind.ECG): "lab-sim-therapist-ecg",
        (Role.THERAPIST, SignalKind.EDA): "lab-sim-therapist-eda",
        (Role.CLIENT, SignalKind.ECG): "lab-sim-client-ecg",
        (Role.CLIENT, SignalKind.EDA): "lab-sim-client-eda",
    }
    assert {s.device.name for s in session.sensors} == {"dyadsync_simulator"}
    assert simulator_session().sensors[0].source_id == "dyadsync-sim-therapist-ecg"


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "key", "fragments"),
    [
        (_replace('signals = ["ecg", "eda"]', 'signals = ["ecg", "emg"]'), "session.signals",
         ["'emg'", "allowed: a non-empty list of distinct values from ecg, eda"]),
        (_replace('signals = ["ecg", "eda"]', "signals = []"), "session.signals", ["[]"]),
        (_replace('signals = ["ecg", "eda"]', 'signals = ["ecg"]'), "therapist.eda",
         ["does not include 'eda'"]),
        (_replace('[client.ecg]\ndevice = "polar_h10"\nname = "Polar H10 B2*"\n', ""),
         "client.ecg", ["is required", "session.signals includes 'ecg'"]),
        (_replace('device = "polar_h10"\nsource_id', 'device = "polar_h11"\nsource_id'),
         "therapist.ecg.device", ["'polar_h11'", "allowed:", "polar_h10", "empatica_e4"]),
        (_replace('device = "empatica_e4"', 'device = "polar_h10"'), "therapist.eda.device",
         ["has no eda signal; it provides: ecg"]),
        (_replace("window_s = 20", "window_s = -20"), "synchrony.window_s",
         ["-20", "allowed: (0.0, inf]"]),
        (_replace("lag_s = 4.0", "lag_s = 25.0"), "synchrony.lag_s",
         ["25.0", "smaller than window_s = 20.0"]),
        (_replace("grid_hz = 8", 'grid_hz = "fast"'), "synchrony.grid_hz",
         ["'fast'", "finite number"]),
        (_replace("z_cap = 8.0", "z_cap = [1, 2]"), "synchrony.z_cap",
         ["[1, 2]", "finite number"]),
        (_replace("z_cap = 8.0", "surrogates = 99"), "synchrony.surrogates",
         ["99", "allowed: a table"]),
        (_replace('source_id = "custom-7"', 'source_id = "polar-A1"'), "client.eda.source_id",
         ["'polar-A1'", "therapist.ecg", "allowed: one stream per person"]),
        (_replace('name = "Polar H10 B2*"', 'nmae = "Polar H10 B2*"'), "client.ecg.nmae",
         ["unknown key", "device, source_id, name"]),
        (_replace("[synchrony]", "[therapist.emg]\ndevice = \"x\"\n[synchrony]"),
         "therapist.emg", ["unknown key", "ecg, eda"]),
        (_replace('room = "room-2"', 'rooom = "room-2"'), "session.rooom",
         ["unknown key", "room, signals"]),
        (GOOD + "[patient.ecg]\n", "patient", ["unknown key", "session, therapist, client"]),
    ],
)  # fmt: skip
def test_bad_session_names_file_key_value_allowed(tmp_path, text, key, fragments) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_session(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: [{key}]"), message
    for fragment in fragments:
        assert fragment in message, message


def test_one_persons_signals_may_share_a_stream(tmp_path) -> None:
    """A BITalino/Biopac stream carries ECG and EDA of one person."""
    text = _replace('source_id = "e4-A1"', 'source_id = "polar-A1"')
    session = load_session(_write(tmp_path, text))
    assert session.sensor(Role.THERAPIST, SignalKind.EDA).source_id == "polar-A1"


def test_bad_device_file_in_session_names_both_files(tmp_path) -> None:
    path = _write(tmp_path, GOOD)
    (tmp_path / "mydevice.toml").write_text(MY_DEVICE.replace('"kOhm"', '"kohm"'), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_session(path)
    message = str(caught.value)
    assert f"{path}: [client.eda.device]" in message
    assert "mydevice.toml: [signals.eda.unit]" in message and "'kohm'" in message
