"""HTML for the dashboard's text parts (header, state tiles, stream badges) and its palette.

Pure functions of the views in :mod:`dashboard.state`, so wording and escaping are unit
tested without a browser. Everything the server sends is escaped: a ``reason`` or
``detail`` string is data, never markup.

Each text part also carries the words it must show once the browser loses its dashboard
server (``lost-only``, hidden until the page's watchdog puts the ``lost`` class on the
Div): the browser cannot ask the server for new HTML then, so the fallback travels with
every update, and one class flip greys the pill, every badge and every tile at once.

Colours are from the Okabe & Ito (2008) colour-blind-safe palette ("Color Universal
Design"): therapist blue and client orange are distinguishable under every common
colour-vision deficiency, and the state colours never carry meaning alone (each state is
also spelled out).

A replay says so in the header (never mistaken for a live session), and its lost-contact
words say the replay probably ended; a recording shows as a neutral chip next to the
stream badges, and a recording problem as a warning badge that stays for the session.
"""

from __future__ import annotations

from html import escape

from .state import REPLAY_GONE, BadgeView, HeaderView, RecordingView, TileView

THERAPIST_COLOR = "#0072B2"  # Okabe-Ito blue
CLIENT_COLOR = "#E69F00"  # Okabe-Ito orange
STRENGTH_COLOR = "#333333"
THRESHOLD_COLOR = "#555555"
STATE_COLORS = {
    "coupled": "#009E73",  # Okabe-Ito bluish green
    "anti_phase": "#CC79A7",  # Okabe-Ito reddish purple
    "decoupled": "#7F7F7F",
}
SIGNAL_TITLES = {
    "hr": "Heart rate",
    "scl": "Skin conductance",
    "phasic": "Phasic skin conductance",
}
SIGNAL_UNITS = {"hr": "bpm", "scl": "µS", "phasic": "µS"}

# Tick labels of the time axis (a Bokeh CustomJSTickFormatter body; ``tick`` is session
# time in ms) as [-][h:]mm:ss, tenths only on sub-second ticks. A time before the session
# start reads with a minus sign instead of wrapping round to "59:59".
SESSION_TIME_JS = """
const tenths = Math.round(Math.abs(tick) / 100);
const whole = Math.floor(tenths / 10);
const pad = (n) => String(n).padStart(2, "0");
const h = Math.floor(whole / 3600);
const m = Math.floor((whole % 3600) / 60);
const s = whole % 60;
let text = h > 0 ? h + ":" + pad(m) + ":" + pad(s) : pad(m) + ":" + pad(s);
if (tenths % 10 !== 0) text += "." + (tenths % 10);
return (tick < 0 && tenths > 0 ? "-" : "") + text;
"""

CSS = """
:host { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; }
.header { display: flex; align-items: baseline; gap: 18px; flex-wrap: wrap;
  padding: 10px 4px 6px 4px; }
.brand { font-size: 20px; font-weight: 600; letter-spacing: 0.02em; }
.session { font-size: 15px; color: #444; }
.muted { color: #777; font-size: 13px; }
.pill { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 13px;
  border: 1px solid; }
.conn-connected { color: #00684b; border-color: #009E73; background: #eaf7f2; }
/* Every state but "connected" is grey: no contact means no news, good or bad; the detail
   next to the pill (and the banner, for the browser side) says what happened. */
.conn-connecting, .conn-disconnected, .conn-silent, .conn-lost { color: #666; border-color: #bbb;
  background: #f0f0f0; }
.lost-only { display: none; }
:host(.lost) .lost-only { display: revert; }
:host(.lost) .live-only { display: none; }
:host(.lost) .badge { color: #888; border-color: #ddd; background: #fafafa; }
:host(.lost) .badge .dot { background: #c8c8c8; }
.convention { font-size: 13px; color: #555; }
/* A replay must never pass for a live session: a boxed tag in sky blue (Okabe-Ito), not
   the session line's grey. */
.mode-replay { display: inline-block; padding: 1px 8px; margin-left: 4px; border-radius: 4px;
  font-weight: 600; color: #005a87; border: 1px solid #56B4E9; background: #eaf5fc; }
.rec { font-size: 13px; padding: 3px 10px; border-radius: 6px; border: 1px solid #ccc;
  background: #fff; color: #444; }
.rec-mark { color: #555; }
.rec-unknown { color: #888; border-color: #ddd; background: #fafafa; }
.rec-detail { color: #666; font-size: 12px; }
.badges { display: flex; gap: 10px; flex-wrap: wrap; padding: 6px 4px; }
.badge { font-size: 13px; padding: 3px 10px; border-radius: 6px; border: 1px solid #ddd;
  background: #fafafa; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%;
  margin-right: 6px; vertical-align: baseline; }
.level-ok .dot { background: #009E73; }
.level-warn .dot { background: #E69F00; }
.level-warn { border-color: #E69F00; background: #fff7e6; }
.level-bad .dot { background: #D55E00; }
.level-bad { border-color: #D55E00; background: #fcefe6; }
.level-unknown .dot { background: #c8c8c8; }
.level-unknown { color: #888; }
.tile { box-sizing: border-box; width: 270px; min-height: 150px; padding: 14px 16px;
  border-radius: 10px; border: 1px solid #ddd; border-left-width: 8px; background: #fff; }
.tile-title { font-size: 13px; text-transform: uppercase; letter-spacing: 0.06em;
  color: #666; }
.tile-state { font-size: 30px; font-weight: 600; margin: 6px 0 4px 0; }
.tile-note { font-size: 15px; color: #444; margin: -2px 0 6px 0; }
.tile-detail { font-size: 16px; color: #333; }
.tile-figures { font-size: 13px; color: #666; margin-top: 8px;
  font-variant-numeric: tabular-nums; }
.tile-coupled { border-left-color: #009E73; }
.tile-coupled .tile-state { color: #00684b; }
.tile-anti_phase { border-left-color: #CC79A7; }
.tile-anti_phase .tile-state { color: #8e4474; }
.tile-decoupled { border-left-color: #7F7F7F; }
.tile-none { border-left-color: #d0d0d0; background: #f3f3f3; }
.tile-none .tile-state { color: #8a8a8a; }
.tile-none .tile-detail { color: #777; font-style: italic; }
.contact-lost { font-size: 15px; padding: 10px 14px; border-radius: 8px; margin: 4px 0;
  color: #8a3a00; background: #fcefe6; border: 1px solid #D55E00; }
.waiting { font-size: 15px; color: #777; padding: 24px 4px; }
"""

# What the pill says, per HeaderView.connection, and once the browser lost its server.
CONNECTION_LABELS = {
    "connected": "Connected",
    "connecting": "Connecting…",
    "disconnected": "Disconnected",
    "silent": "No data",
}
LOST_LABEL = "No contact"
LOST_TILE_DETAIL = "Lost contact with the dashboard server"
# HeaderView.mode -> the words after the session name; another mode is shown as sent.
MODE_LABELS = {"live": "live", "replay": "Replay of a recorded session"}
# What a recording problem (RecordingView.kind) means for the clinician, before the
# server's own words.
RECORDING_PROBLEMS = {
    "failed": "Recording stopped — disk full or failing",
    "lagging": "Recording incomplete — the disk cannot keep up, some data is not saved",
}
RECORDING_ON = "Recording"
RECORDING_UNKNOWN = "Recording: unknown"


def render_header(view: HeaderView) -> str:
    session = (
        f'<span class="session">Session <b>{escape(view.session)}</b>{_mode_html(view)}</span>'
        if view.session
        else '<span class="session muted">No session yet</span>'
    )
    label = CONNECTION_LABELS[view.connection]
    detail = (
        f' <span class="muted live-only">{escape(view.connection_detail)}</span>'
        if view.connection_detail
        else ""
    )
    ignored = (
        f' <span class="muted">· {view.ignored_messages} messages ignored</span>'
        if view.ignored_messages
        else ""
    )
    return (
        '<div class="header">'
        '<span class="brand">dyadsync</span>'
        f"{session}"
        f'<span><span class="pill conn-{view.connection} live-only">{label}</span>'
        f'<span class="pill conn-lost lost-only">{LOST_LABEL}</span>{detail}{ignored}</span>'
        f'<span class="convention">Lag convention: {escape(view.lag_convention)}</span>'
        "</div>"
    )


def _mode_html(view: HeaderView) -> str:
    if not view.mode:
        return ""
    label = escape(MODE_LABELS.get(view.mode, view.mode))
    if view.is_replay:
        return f' · <span class="mode-replay">{label}</span>'
    return f" · {label}"


def render_tile(view: TileView, *, replay: bool = False) -> str:
    """``replay``: the session is a replay, whose server stops once it played everything."""
    lost = TileView(
        signal=view.signal,
        kind="none",
        headline="No estimate",
        detail=REPLAY_GONE if replay else LOST_TILE_DETAIL,
        figures="",
    )
    return _tile_html(view, "live-only") + _tile_html(lost, "lost-only")


def _tile_html(view: TileView, variant: str) -> str:
    figures = f'<div class="tile-figures">{escape(view.figures)}</div>' if view.figures else ""
    note = f'<div class="tile-note">{escape(view.note)}</div>' if view.note else ""
    return (
        f'<div class="tile tile-{view.kind} {variant}">'
        f'<div class="tile-title">{escape(SIGNAL_TITLES.get(view.signal, view.signal))}'
        " synchrony</div>"
        f'<div class="tile-state">{escape(view.headline)}</div>'
        f"{note}"
        f'<div class="tile-detail">{escape(view.detail)}</div>'
        f"{figures}"
        "</div>"
    )


def render_badges(badges: tuple[BadgeView, ...], *, recording: RecordingView | None = None) -> str:
    """The stream badges, then the recording chip (none when ``recording`` is None)."""
    chip = _recording_html(recording) if recording is not None else ""
    if not badges:
        return f'<div class="badges"><span class="muted">Sensor streams: waiting</span>{chip}</div>'
    items = "".join(
        f'<span class="badge level-{b.level}" title="{escape(b.detail)}">'
        f'<span class="dot"></span>{escape(b.label)}: '
        f'<span class="live-only">{escape(b.kind)}'
        f"{' — ' + escape(b.detail) if b.level in ('warn', 'bad') and b.detail else ''}</span>"
        '<span class="lost-only">unknown</span>'
        "</span>"
        for b in badges
    )
    return f'<div class="badges">{items}{chip}</div>'


def _recording_html(view: RecordingView) -> str:
    if view.kind in RECORDING_PROBLEMS:
        # The same in both page states: the file is incomplete whether or not the server
        # is still reachable, so this is not greyed with the live badges.
        detail = f' <span class="rec-detail">({escape(view.detail)})</span>' if view.detail else ""
        return (
            f'<span class="rec level-warn" title="{escape(view.detail)}">'
            f'<span class="dot"></span>{escape(RECORDING_PROBLEMS[view.kind])}{detail}</span>'
        )
    unknown = f'<span class="rec rec-unknown">{RECORDING_UNKNOWN}</span>'
    if view.kind == "unknown":
        return unknown
    # Once the browser loses its server nobody can say the recording goes on.
    return (
        f'<span class="rec rec-on live-only" title="Recording to {escape(view.file)}">'
        f'<span class="rec-mark">●</span> {RECORDING_ON}</span>'
        f'<span class="lost-only">{unknown}</span>'
    )


CONTACT_LOST_HTML = (
    '<div class="contact-lost lost-only">Lost contact with the dashboard server: what is '
    "shown below is frozen and may be out of date. The page retries by itself; if dyadsync "
    "was stopped, reload the page once it is running again.</div>"
)
# A replay's server stops at the end of the file (unless --keep-open): the usual case,
# not an accident, so the banner says so first.
REPLAY_LOST_HTML = (
    f'<div class="contact-lost lost-only">{REPLAY_GONE}: what is shown below is where the '
    "replay stopped. To see it again, replay the file once more and reload this page.</div>"
)


def render_contact_lost(*, replay: bool) -> str:
    """The banner shown once the browser loses its dashboard server."""
    return REPLAY_LOST_HTML if replay else CONTACT_LOST_HTML


WAITING_HTML = '<div class="waiting">Waiting for the dyadsync server…</div>'
