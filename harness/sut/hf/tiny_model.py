"""The embedded default model: a tiny Llama with seeded random weights, made on first use.

``sut=hf`` with ``model_path: null`` loads this model, so the harness measures a real neural
network anywhere, offline, in seconds. Its outputs are meaningless text. The tokenizer is a
byte-level BPE trained with ``tokenizers`` on the bundled sample (so token counts look like a
real model's); the weights come from a seeded ``LlamaForCausalLM`` initialisation. Both are
saved as an ordinary Hugging Face directory (config.json, model.safetensors, tokenizer files)
in a cache directory keyed by a hash of the recipe, and then loaded through the same code path
as real weights. The directory is written under a temporary name and renamed into place, so
concurrent first uses never see (or leave) a half-written model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.datasets import BUNDLED_SAMPLE

log = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<s>", "</s>"  # ids 0, 1, 2: the trainer assigns special tokens first
# Weight initialisation draws from torch's global RNG: one build at a time per process keeps it
# seeded. Across processes the atomic rename below is what protects the cache.
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the embedded model's files (and so its cache key)."""

    vocab_size: int = 4096  # an upper bound: BPE stops when no pair occurs min_frequency times
    min_frequency: int = 2
    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention, as in Llama 3
    max_position_embeddings: int = 4096
    seed: int = 0
    version: int = 1  # bump when the build below changes
    # The model's vocabulary (embedding and LM head rows); None: the tokenizer's. Larger, as real
    # models pad theirs, gives a benchmark model the LM head of a real one (e.g. Llama 2's 32,000)
    # while the tokenizer stays the one trained on the bundled sample: ids beyond it decode to nothing.
    model_vocab_size: int | None = None

    def key(self) -> dict:
        """The fields that shape the files; a field at its default None leaves the key (and the
        default model's cache directory) as it was before the field existed."""
        return {k: v for k, v in dataclasses.asdict(self).items() if not (k == "model_vocab_size" and v is None)}


def cache_root() -> Path:
    """``$HARNESS_CACHE``, else ``$XDG_CACHE_HOME/llm-harness``, else ``~/.cache/llm-harness``."""
    if os.environ.get("HARNESS_CACHE"):
        return Path(os.environ["HARNESS_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "llm-harness"


def recipe_hash(recipe: TinyRecipe, corpus_file: Path = BUNDLED_SAMPLE) -> str:
    """Hash of the recipe, the training text and the library versions that shape the files."""
    import tokenizers
    import torch
    import transformers

    h = hashlib.sha256()
    h.update(json.dumps(recipe.key(), sort_keys=True).encode())
    h.update(corpus_file.read_bytes())
    # Weight initialisation and BPE training may change across releases: a new version, a new model.
    h.update(f"{torch.__version__} {transformers.__version__} {tokenizers.__version__}".encode())
    return h.hexdigest()[:16]


def ensure_tiny_model(recipe: TinyRecipe = TinyRecipe(), root: Path | None = None) -> Path:
    """The embedded model's directory, created (atomically) if it does not exist yet."""
    root = (root or cache_root()) / "models"
    final = root / f"tiny-llama-{recipe_hash(recipe)}"
    if (final / "config.json").is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    except OSError as exc:
        from harness.errors import SUTError

        raise SUTError(f"cannot create the embedded model in {root}: {exc.strerror or exc} "
                       "(set HARNESS_CACHE to a writable directory)") from exc
    try:
        with _BUILD_LOCK:
            build_tiny_model(recipe, tmp)
        try:
            os.rename(tmp, final)  # atomic; fails if another process renamed its copy first
            log.info("created the embedded tiny model in %s", final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return final


def _corpus(corpus_file: Path) -> list[str]:
    rows = [json.loads(line) for line in corpus_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row[key] for row in rows for key in ("article", "highlights") if row.get(key)]


def build_tiny_model(recipe: TinyRecipe, out_dir: Path, corpus_file: Path = BUNDLED_SAMPLE) -> Path:
    """Train the tokenizer, initialise the weights and save both as a Hugging Face directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars would clutter the run's log
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=recipe.vocab_size, min_frequency=recipe.min_frequency,
                                  special_tokens=[PAD, BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(corpus_file), trainer)
    pad_id, bos_id, eos_id = (tok.token_to_id(t) for t in (PAD, BOS, EOS))
    # Prompts start with BOS, as Llama's tokenizer does.
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                            pad_token=PAD).save_pretrained(out_dir)

    if recipe.model_vocab_size is not None and recipe.model_vocab_size < tok.get_vocab_size():
        raise ValueError(f"model_vocab_size={recipe.model_vocab_size} is below the tokenizer's "
                         f"{tok.get_vocab_size()} tokens")
    config = LlamaConfig(vocab_size=recipe.model_vocab_size or tok.get_vocab_size(), hidden_size=recipe.hidden_size,
                         intermediate_size=recipe.intermediate_size, num_hidden_layers=recipe.num_hidden_layers,
                         num_attention_heads=recipe.num_attention_heads,
                         num_key_value_heads=recipe.num_key_value_heads,
                         max_position_embeddings=recipe.max_position_embeddings,
                         bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):  # seeded weights without disturbing the caller's RNG
        torch.manual_seed(recipe.seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
                                               do_sample=False)
    model.save_pretrained(out_dir)
    return out_dir
