"""The in-process torch/transformers SUT (``sut=hf``): any local Hugging Face causal-LM directory.

Decoding is greedy (MLPerf rule): output ids exclude the prompt, stop at EOS (reported once) or
at the benchmark's ``max_new_tokens``. Prompts are tokenized in :meth:`HFSUT.load`, outside the
timed path. Offline batches (length-sorted by the bridge) run through ``model.generate`` with left
padding; Server and SingleStream stream through :class:`InflightDecoder`, where new requests join
the running batch at step boundaries. With ``draft_model_path`` every request, Offline or
streamed, goes one at a time through greedy speculative decoding
(:mod:`harness.sut.hf.speculative`). ``model_path: null`` loads the embedded tiny model
(:mod:`harness.sut.hf.tiny_model`) through this same path. Nothing is downloaded: the hub client
runs offline and every load is ``local_files_only``. All torch work (load, warm-up, batches,
decode loops) runs on one thread, :mod:`harness.sut.hf.torch_thread`, whichever thread calls.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.config import bounded
from harness.errors import ConfigError, SUTError
from harness.sut.base import SUT, Completion, ModelInfo, Sample, SUTContext, SUTInfo, TokenStream

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class HFParams:
    """Settings of ``sut=hf`` (conf/sut/hf.yaml)."""

    model_path: str | None = None  # a local Hugging Face directory; null = the embedded tiny model
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bfloat16 on CUDA, else float32
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    max_batch_size: int = bounded(32, ge=1)  # Offline batch size, and the most requests decoded together when streaming
    trust_remote_code: bool = False  # run Python code shipped with the model directory
    seed: int = bounded(0, ge=0)  # torch's RNG, and the embedded tiny model's random weights
    # torch's CPU threads; null: 1 for the embedded tiny model (its matrices are too small to split
    # between threads: 2 threads ran it 2-10x slower on a busy 2-core machine), else torch's default.
    threads: int | None = bounded(None, ge=1)
    # CUDA only, opt-in: stream one request at a time through generate() with a static KV cache,
    # which transformers compiles with CUDA graphs; for SingleStream (no in-flight batching).
    cuda_fast_decode: bool = False
    # Speculative decoding (greedy, lossless): a local directory of a smaller model with the target's
    # tokenizer; requests are then decoded one at a time (no in-flight batching). null = no draft.
    draft_model_path: str | None = None
    num_draft_tokens: int = bounded(4, ge=1)  # k: draft tokens the target verifies per forward


class HFTokenizer:
    """A Hugging Face tokenizer seen through harness.sut.base.Tokenizer."""

    def __init__(self, tokenizer: Any, eos_token_id: int | None) -> None:
        self.hf = tokenizer
        self.eos_token_id = eos_token_id

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text))  # with the model's own special tokens (e.g. BOS)

    def decode(self, token_ids: Sequence[int]) -> str:
        # skip_special_tokens: the MLPerf accuracy scripts detokenize this way (no EOS/pad text).
        return self.hf.decode([int(t) for t in token_ids], skip_special_tokens=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("sut.device=cuda, but CUDA is not available (use sut.device=cpu or auto)")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"  # bf16 matmuls are slow on most CPUs
    return getattr(torch, dtype)


def cpu_threads(params: HFParams) -> int | None:
    """The torch thread count to set, or None to keep torch's default."""
    if params.threads is not None:
        if params.threads < 1:
            raise ConfigError(f"sut.threads must be at least 1, got {params.threads}")
        return params.threads
    return 1 if params.model_path is None else None


def model_dir(params: HFParams) -> Path:
    """The directory to load: ``sut.model_path``, or the embedded model (created on first use)."""
    if params.model_path is None:
        from harness.sut.hf.tiny_model import TinyRecipe, ensure_tiny_model

        return ensure_tiny_model(TinyRecipe(seed=params.seed))
    return _local_model_dir(params.model_path, "sut.model_path")


def draft_dir(params: HFParams) -> Path | None:
    """``sut.draft_model_path`` checked before any weights load, or None without a draft."""
    if params.draft_model_path is None:
        return None
    return _local_model_dir(params.draft_model_path, "sut.draft_model_path")


def _local_model_dir(value: str, key: str) -> Path:
    """A Hugging Face model directory named by config ``key``; a one-line error naming the key."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{key}: no model directory at {path}")
    if not (path / "config.json").is_file():
        raise SUTError(f"{key}: {path} is not a Hugging Face model directory (no config.json)")
    return path


def _import_transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces with local_files_only below
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter the run's log
    return transformers


def load_tokenizer(path: Path, *, trust_remote_code: bool) -> Any:
    """The tokenizer of a local model directory; SUTError names the path."""
    transformers = _import_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                          trust_remote_code=trust_remote_code)
    except Exception as exc:
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise SUTError(f"cannot load the tokenizer in {path}: none of {', '.join(_TOKENIZER_FILES)} "
                           "is there") from exc
        raise SUTError(f"cannot load the tokenizer in {path}: {_first_line(exc)}") from exc


def load_model(path: Path, *, dtype: torch.dtype, device: str, trust_remote_code: bool) -> tuple[Any, Any]:
    """Model (eval mode, on ``device``) and tokenizer from a local directory; SUTError names the path."""
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    transformers = _import_transformers()
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, use_safetensors=True, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:
        hint = " (set sut.trust_remote_code=true to run its code)" if "trust_remote_code" in str(exc) else ""
        raise SUTError(f"cannot load the model in {path}: {_first_line(exc)}{hint}") from exc
    return model.to(device).eval(), tokenizer


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The checkpoint's stop tokens: generation_config (may be a list, as in Llama 3), else the tokenizer's."""
    for source in (model.generation_config.eos_token_id, model.config.eos_token_id, tokenizer.eos_token_id):
        if source is not None:
            return frozenset([source] if isinstance(source, int) else source)
    raise SUTError("the model defines no EOS token (generation_config.json, config.json or the tokenizer)")


def _check(params: HFParams, max_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ConfigError(f"benchmark.max_new_tokens must be at least 1, got {max_new_tokens}")
    if params.max_batch_size < 1:
        raise ConfigError(f"sut.max_batch_size must be at least 1, got {params.max_batch_size}")
    if params.num_draft_tokens < 1:
        raise ConfigError(f"sut.num_draft_tokens must be at least 1, got {params.num_draft_tokens}")
    if params.draft_model_path is not None and params.cuda_fast_decode:
        raise ConfigError("sut.draft_model_path and sut.cuda_fast_decode=true cannot be combined")


def until_eos(tokens: Sequence[int], eos: frozenset[int]) -> tuple[int, ...]:
    """Tokens up to and including the first EOS: at most one trailing EOS (MLPerf TEST06)."""
    for i, t in enumerate(tokens):
        if t in eos:
            return tuple(tokens[:i + 1])
    return tuple(tokens)


def describe_model(model: Any, path: Path) -> ModelInfo:
    """What results.json records of the model (``extra.model``; MLflow tags its fingerprint)."""
    from harness.sut.fingerprint import model_fingerprint

    params = list(model.parameters())
    return ModelInfo(path=str(path), architecture=type(model).__name__, fingerprint=model_fingerprint(path),
                     parameters=sum(p.numel() for p in params), dtype=str(params[0].dtype).removeprefix("torch."),
                     weight_bytes=sum(p.numel() * p.element_size() for p in params))


class HFSUT(SUT):
    """A causal LM in this process: batched generate() for Offline, in-flight batching for streaming
    (with a draft model: speculative decoding, one request at a time)."""

    Params = HFParams
    name = "hf"
    streaming = True
    concurrency = 1  # one model, one caller: a second Offline worker would only contend for it

    def __init__(self, model: Any, tokenizer: Any, *, params: HFParams, max_new_tokens: int, path: Path,
                 draft: Any = None, draft_path: Path | None = None) -> None:
        import torch
        from transformers import GenerationConfig

        from harness.sut.hf.inflight import InflightDecoder
        from harness.sut.hf.torch_thread import torch_thread

        _check(params, max_new_tokens)
        self._torch_thread = torch_thread()
        self.model = model
        self.path = path
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.max_batch_size = params.max_batch_size
        self.device = next(model.parameters()).device
        self.eos = eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        self.pad_id = int(pad)
        eos_token = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(self.eos)
        self.tokenizer = HFTokenizer(tokenizer, eos_token)
        # The checkpoint's own sampling defaults (temperature, top_p, repetition penalty...) must not
        # leak into generate(): MLPerf decodes greedily, so the SUT owns the generation config.
        model.generation_config = GenerationConfig(eos_token_id=sorted(self.eos), pad_token_id=self.pad_id,
                                                   bos_token_id=tokenizer.bos_token_id, do_sample=False, num_beams=1)
        self.generation_config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                                  eos_token_id=sorted(self.eos), pad_token_id=self.pad_id)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.context_length = self.max_positions  # the run cuts prompts to fit it (harness.datasets.prompts)
        self.loaded = describe_model(model, path)
        self._prompts: dict[int, list[int]] = {}
        self._torch = torch
        self.draft = draft
        if draft is not None:
            from harness.sut.hf.speculative import SpeculativeDecoder

            drafted = describe_model(draft, draft_path or Path(str(params.draft_model_path)))
            self.loaded = replace(self.loaded, draft=replace(drafted, num_draft_tokens=params.num_draft_tokens))
            self.decoder: Any = SpeculativeDecoder(model, draft, eos_ids=self.eos, max_new_tokens=max_new_tokens,
                                                   num_draft_tokens=params.num_draft_tokens,
                                                   generation_config=self.generation_config)
        elif params.cuda_fast_decode:
            from harness.sut.hf.fast import SerialDecoder

            self.decoder = SerialDecoder(model, self.generation_config, static_cache=True)
        else:
            self.decoder = InflightDecoder(model, eos_ids=self.eos, max_new_tokens=max_new_tokens,
                                           max_batch_size=params.max_batch_size, pad_id=self.pad_id)
        self._warm_up()

    @classmethod
    def create(cls, params: HFParams, ctx: SUTContext) -> HFSUT:
        """Load and warm up on the torch thread, where all of this SUT's torch work runs
        (:mod:`harness.sut.hf.torch_thread`: one OpenMP team per process, as in a bare loop)."""
        from harness.sut.hf.torch_thread import torch_thread

        return torch_thread().call(cls._create, params, ctx)

    @classmethod
    def _create(cls, params: HFParams, ctx: SUTContext) -> HFSUT:
        import torch

        _check(params, ctx.max_new_tokens)  # before the (possibly long) load
        device = resolve_device(params.device)
        if params.cuda_fast_decode and device != "cuda":
            raise ConfigError("sut.cuda_fast_decode=true needs CUDA (sut.device=cuda or auto on a GPU machine)")
        torch.manual_seed(params.seed)
        threads = cpu_threads(params)
        if threads is not None:
            torch.set_num_threads(threads)
        path = model_dir(params)
        dpath = draft_dir(params)  # a wrong draft path fails before the (possibly long) target load
        dtype = resolve_dtype(params.dtype, device)
        model, tokenizer = load_model(path, dtype=dtype, device=device, trust_remote_code=params.trust_remote_code)
        log.info("sut=hf: %s (%s, %s parameters) on %s, %s, %d CPU threads", path, type(model).__name__,
                 f"{sum(p.numel() for p in model.parameters()):,}", device, next(model.parameters()).dtype,
                 torch.get_num_threads())
        draft = None
        if dpath is not None:
            from harness.sut.hf.speculative import check_draft_pair

            try:
                draft, draft_tokenizer = load_model(dpath, dtype=dtype, device=device,
                                                    trust_remote_code=params.trust_remote_code)
            except SUTError as exc:
                raise SUTError(f"sut.draft_model_path: {exc}") from exc
            check_draft_pair(model, tokenizer, draft, draft_tokenizer, dpath)
            log.info("sut=hf: speculative decoding with the draft %s (%s parameters), %d draft tokens per "
                     "verification; one request at a time", dpath,
                     f"{sum(p.numel() for p in draft.parameters()):,}", params.num_draft_tokens)
        return cls(model, tokenizer, params=params, max_new_tokens=ctx.max_new_tokens, path=path, draft=draft,
                   draft_path=dpath)

    @classmethod
    def check(cls, params: HFParams, ctx: SUTContext) -> None:
        """What can be checked without loading anything (the run's preflight, in the parent
        process): settings, and that the model and draft directories exist."""
        _check(params, ctx.max_new_tokens)
        cpu_threads(params)
        if params.model_path is not None:
            model_dir(params)
        draft_dir(params)

    @classmethod
    def load_tokenizer(cls, params: HFParams, ctx: SUTContext) -> HFTokenizer:
        """The tokenizer alone (no weights), e.g. to decode a finished run's accuracy log."""
        del ctx
        tokenizer = load_tokenizer(model_dir(params), trust_remote_code=params.trust_remote_code)
        return HFTokenizer(tokenizer, tokenizer.eos_token_id)

    # -- the SUT protocol ------------------------------------------------------------------
    def load(self, samples: Sequence[Sample]) -> None:
        """Tokenize prompts now: LoadGen calls this before timing starts."""
        too_long = 0
        for s in samples:
            if s.index not in self._prompts:
                ids = self.tokenizer.encode(s.prompt)
                self._prompts[s.index] = ids
                if self.max_positions and len(ids) + self.max_new_tokens > self.max_positions:
                    too_long += 1
        if too_long:
            log.warning("%d prompts plus max_new_tokens=%d exceed the model's %d positions", too_long,
                        self.max_new_tokens, self.max_positions)
        if self.params.cuda_fast_decode and self._prompts:
            # Compile (CUDA graphs) for the longest prompt now, outside the timed path (on the torch thread).
            self.decoder.warm_up(max(self._prompts.values(), key=len))

    def prompt_ids(self, sample: Sample) -> list[int]:
        ids = self._prompts.get(sample.index)
        return ids if ids is not None else self.tokenizer.encode(sample.prompt)

    def generate(self, batch: Sequence[Sample]) -> list[Completion]:
        return self._torch_thread.call(self._generate, batch)

    def _generate(self, batch: Sequence[Sample]) -> list[Completion]:
        from harness.sut.hf.inflight import left_pad

        if self.draft is not None:  # speculative decoding is batch 1: the samples one after another
            return [Completion(s.index, self.decoder.decode(self.prompt_ids(s))) for s in batch]

        ids, mask, _ = left_pad([self.prompt_ids(s) for s in batch], self.pad_id, self.device)
        try:
            with self._torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask,
                                          generation_config=self.generation_config)
        except Exception as exc:
            if len(batch) == 1:
                return [Completion(batch[0].index, (), error=f"{type(exc).__name__}: {exc}")]
            # One bad sample (e.g. a prompt the model cannot hold) must not fail the others of its batch.
            log.warning("a batch of %d failed (%s: %s); generating its samples one at a time", len(batch),
                        type(exc).__name__, exc)
            return [c for s in batch for c in self.generate([s])]
        new = out[:, ids.shape[1]:].tolist()
        return [Completion(s.index, until_eos(row, self.eos)) for s, row in zip(batch, new, strict=True)]

    def submit(self, sample: Sample, stream: TokenStream) -> None:
        self.decoder.submit(self.prompt_ids(sample), stream)

    def stats(self) -> dict[str, Any] | None:
        """Speculative decoding's counters (results.json ``extra.sut_stats.<test>``); None without a draft."""
        return self.decoder.stats.as_dict() if self.draft is not None else None

    @property
    def model_info(self) -> dict[str, Any]:
        """The loaded model(s) as results.json records them (``extra.model``)."""
        return self.loaded.to_json()

    def describe(self) -> SUTInfo:
        return SUTInfo(name=self.name, device=str(self.device), device_name=self._device_name(),
                       decode_batch=self.max_batch_size, decode_batch_key="max_batch_size",
                       context_length=self.context_length, model=self.loaded, stats=self.stats())

    def _device_name(self) -> str | None:
        """On CUDA, the GPU's name as the driver gives it (the roofline's datasheet row)."""
        if self.device.type != "cuda":
            return None
        try:
            return self._torch.cuda.get_device_name(self.device)
        except Exception as exc:  # a name is a nicety; the environment's GPU list is the fallback
            log.debug("no CUDA device name: %s", exc)
            return None

    def close(self) -> None:
        self.decoder.close()
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()

    def _warm_up(self) -> None:
        """One tiny generate, so one-time initialisation is not charged to the first sample."""
        self._torch_thread.call(self._warm_up_here)

    def _warm_up_here(self) -> None:
        ids = self.tokenizer.encode("Warm up.") or [self.pad_id]
        warm = copy.deepcopy(self.generation_config)
        warm.max_new_tokens = 2
        with self._torch.inference_mode():
            self.model.generate(input_ids=self._torch.tensor([ids], device=self.device),
                                attention_mask=self._torch.ones((1, len(ids)), dtype=self._torch.long,
                                                                device=self.device),
                                generation_config=warm)
        if self.draft is not None:
            self.decoder.warm_up(ids)
