import pytest

from harness.config import compose
from harness.datasets import Dataset, Record
from harness.datasets.prompts import InputLimit, build_samples, fit_samples, input_limit, render_prompt
from harness.errors import ConfigError
from harness.sut.tokenizer import WordTokenizer


def test_benchmark_templates():
    gptj = compose(["benchmark=gptj"]).benchmark
    assert render_prompt(gptj, "ART", None).endswith("### Instruction:\nSummarize the following news article:"
                                                     "\n\n### Input:\nART\n\n### Response:")
    llama31 = compose(["benchmark=llama3_1-8b"]).benchmark
    assert render_prompt(llama31, "ART {x}", None) == (
        "Summarize the following news article in 128 tokens. Please output the summary only, without any "
        "other text.\n\nArticle:\nART {x}\n\nSummary:")
    llama2 = compose(["benchmark=llama2-70b"]).benchmark
    assert render_prompt(llama2, "Q", None) == "<s>[INST] Q [/INST]"
    assert render_prompt(llama2, "Q", "Be brief.") == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nQ [/INST]"


def test_templated_records_are_used_as_they_are():
    bench = compose(["benchmark=llama2-70b"]).benchmark
    ds = Dataset("d", "f", (Record("0", "<s>[INST] whole prompt [/INST]", "R"),), templated=True)
    assert build_samples(bench, ds)[0].prompt == "<s>[INST] whole prompt [/INST]"


def test_inputs_are_truncated_so_the_whole_prompt_fits():
    bench = compose(["benchmark=gptj", "benchmark.max_input_tokens=120"]).benchmark
    long_input = " ".join(f"w{i}" for i in range(200))
    ds = Dataset("d", "f", (Record("0", long_input, "R"), Record("1", "short one", "R")))
    tokenizer = WordTokenizer([render_prompt(bench, long_input, None), "short one"])
    samples = build_samples(bench, ds, tokenizer)
    full = render_prompt(bench, long_input, None)
    assert len(tokenizer.encode(samples[0].prompt)) <= 120 < len(tokenizer.encode(full))
    assert samples[0].prompt.endswith("### Response:") and samples[0].text.startswith("w0 w1")
    assert samples[1].text == "short one"
    assert build_samples(bench, ds)[0].text == long_input  # no tokenizer: nothing cut



def test_truncation_with_a_bos_adding_tokenizer_fills_the_limit_exactly():
    """The embedded model's tokenizer adds a BOS to every encoding; it is in the prompt once."""
    from harness.sut.hf.adapter import HFTokenizer, load_tokenizer
    from harness.sut.hf.tiny_model import ensure_tiny_model

    hf = load_tokenizer(ensure_tiny_model(), trust_remote_code=False)
    tokenizer = HFTokenizer(hf, hf.eos_token_id)
    assert tokenizer.encode("") == [hf.bos_token_id]
    long_input = " ".join(f"word{i} the cat sat" for i in range(100))
    ds = Dataset("d", "f", (Record("0", long_input, "R"),))
    for limit in (110, 150, 151):
        bench = compose(["benchmark=gptj", f"benchmark.max_input_tokens={limit}"]).benchmark
        assert len(tokenizer.encode(build_samples(bench, ds, tokenizer)[0].prompt)) == limit


def test_the_input_limit_defaults_to_the_models_context_and_is_checked_against_it():
    bench = compose(["benchmark=sample", "benchmark.max_new_tokens=32"]).benchmark
    assert input_limit(bench, None) is None
    assert input_limit(bench, 256) == InputLimit(224, "the model's 256 positions - benchmark.max_new_tokens 32")
    own = compose(["benchmark=sample", "benchmark.max_new_tokens=32", "benchmark.max_input_tokens=100"]).benchmark
    assert input_limit(own, 256) == InputLimit(100, "benchmark.max_input_tokens")
    with pytest.raises(ConfigError, match="set benchmark.max_input_tokens <= 96"):
        input_limit(own, 128)
    with pytest.raises(ConfigError, match="benchmark.max_new_tokens=32 leaves no room"):
        input_limit(bench, 32)


def test_prompts_that_cannot_fit_are_refused_naming_what_to_change():
    bench = compose(["benchmark=gptj"]).benchmark
    ds = Dataset("d", "f", (Record("0", "an input", "R"),))
    tokenizer = WordTokenizer([render_prompt(bench, "an input", None)])
    template_only = len(tokenizer.encode(render_prompt(bench, "", None)))
    with pytest.raises(ConfigError, match="benchmark.prompt_template: the prompt of record 0 is over the limit"):
        fit_samples(bench, ds, tokenizer, InputLimit(template_only - 1, "benchmark.max_input_tokens"))
    templated = Dataset("d", "data.jsonl", (Record("0", "one two three four", "R"),), templated=True)
    with pytest.raises(ConfigError, match=r"record 0 of data.jsonl is a whole prompt of \d+ tokens, over the limit"):
        fit_samples(bench, templated, WordTokenizer(["one two three four"]), InputLimit(3, "x"))
    samples, cut = fit_samples(bench, ds, tokenizer, InputLimit(template_only + 1, "benchmark.max_input_tokens"))
    assert cut == 1 and samples[0].text != "an input"
    assert len(tokenizer.encode(samples[0].prompt)) <= template_only + 1
