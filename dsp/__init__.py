"""dyadsync's pure signal-processing core (no I/O: see DESIGN.md).

One public entry point per capability:

* ECG: :func:`detect_r_peaks` (batch) / :class:`RPeakDetector` (streaming) and
  :class:`HeartRateProcessor` (R-peaks -> corrected IBI -> heart rate on the grid).
* EDA: :func:`eda_features` (batch) / :class:`EdaProcessor` (streaming),
  :func:`conductance_from_resistance`.
* Synchrony: :func:`windowed_cross_correlation` (batch, rMEA conventions) /
  :class:`StreamingCrossCorrelation`, :func:`concordance_index`, and the live
  :class:`SynchronyEngine` (significance, lead/lag, episodes, coregulation summary).
* The whole dyad: :class:`DyadPipeline`.
"""

from dsp.concordance import concordance_index
from dsp.ecg import RPeakConfig, RPeakDetector, RPeaks, detect_r_peaks
from dsp.eda import (
    EdaConfig,
    EdaFeatures,
    EdaOutput,
    EdaProcessor,
    Scr,
    conductance_from_resistance,
    eda_features,
)
from dsp.eda_quality import EdaQuality, InvalidSpan
from dsp.exceptions import (
    ConfigError,
    DyadsyncError,
    SignalError,
)
from dsp.filters import StreamingSosFilter, butter_sos
from dsp.heart_rate import HeartRateConfig, HeartRateOutput, HeartRateProcessor, HrReason
from dsp.pipeline import Derived, DyadPipeline, PipelineConfig
from dsp.synchrony import (
    LAG_CONVENTION,
    CoregulationSummary,
    EpisodeEvent,
    SynchronyConfig,
    SynchronyEngine,
    SyncUpdate,
)
from dsp.xcorr import CrossCorrelation, StreamingCrossCorrelation, windowed_cross_correlation

__all__ = [
    "LAG_CONVENTION",
    "ConfigError",
    "CoregulationSummary",
    "CrossCorrelation",
    "Derived",
    "DyadPipeline",
    "DyadsyncError",
    "EdaConfig",
    "EdaFeatures",
    "EdaOutput",
    "EdaProcessor",
    "EdaQuality",
    "EpisodeEvent",
    "HeartRateConfig",
    "HeartRateOutput",
    "HeartRateProcessor",
    "HrReason",
    "InvalidSpan",
    "PipelineConfig",
    "RPeakConfig",
    "RPeakDetector",
    "RPeaks",
    "Scr",
    "SignalError",
    "StreamingCrossCorrelation",
    "StreamingSosFilter",
    "SyncUpdate",
    "SynchronyConfig",
    "SynchronyEngine",
    "butter_sos",
    "concordance_index",
    "conductance_from_resistance",
    "detect_r_peaks",
    "eda_features",
    "windowed_cross_correlation",
]
