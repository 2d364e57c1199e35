"""An MLPerf-style benchmark harness for LLM inference, driving the real MLPerf LoadGen."""

__version__ = "0.1.0"
