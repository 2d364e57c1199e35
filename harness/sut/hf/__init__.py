"""``sut=hf``: a causal LM in this process through torch/transformers.

- ``adapter``: the SUT (:class:`~harness.sut.hf.adapter.HFSUT`), model loading, Offline batches;
- ``inflight``: in-flight batching for streamed requests; ``fast``: one request at a time with a
  static KV cache (CUDA graphs); ``speculative``: greedy speculative decoding with a draft model;
- ``torch_thread``: the one thread all torch work runs on; ``kv_cache``: transformers' cache keyword;
- ``tiny_model``: the embedded tiny model (random weights) the default run loads.

Nothing here imports torch until a SUT is built, so ``import harness.sut.hf.adapter`` is cheap.
"""
