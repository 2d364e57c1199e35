"""HTTP transport shared by ``sut=openai``, ``harness-providers`` and the benchmarks (:mod:`harness.http.http1`)."""
