"""``sut=openai``: any OpenAI-compatible server over HTTP.

- ``adapter``: the SUT (:class:`~harness.sut.openai.adapter.OpenAISUT`): preflight, streaming,
  Offline batches, request and token accounting;
- ``client``: the OpenAI request and stream protocol (completions and chat) on :mod:`harness.http.http1`;
- ``tokens``: where output token counts come from (the server's ids or usage, else re-tokenized).
"""
