"""An MLPerf-style benchmark harness for LLM inference, driving the real MLPerf LoadGen.

Importing the package changes nothing in the process: the commands put the Hugging Face libraries
offline when they start (:mod:`harness.offline`).
"""

__version__ = "0.1.0"
