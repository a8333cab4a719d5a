"""SleepVLM Workstation.

``sleepvlm_ws.core`` holds everything that does not need Qt (recordings, montages,
epochs and stages, rendering, the study file and its audit trail); ``sleepvlm_ws.io``
holds hypnogram import/export; ``sleepvlm_ws.ui`` only presents and forwards.
"""

__version__ = "0.1.0"
