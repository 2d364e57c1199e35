from harness.sut.tokenizer import EOS, UNK, WordTokenizer

CORPUS = ["The council approved $3.2 million for bike lanes.", "Rain, then sun!\n\nSummary:"]


def test_round_trip_is_lossless_for_corpus_text():
    tok = WordTokenizer(CORPUS)
    for text in CORPUS:
        assert tok.decode(tok.encode(text)) == text


def test_counts_are_word_like():
    tok = WordTokenizer(CORPUS)
    # words, spaces and punctuation are separate pieces, as in a real subword vocabulary
    assert len(tok.encode("bike lanes.")) == 4


def test_vocabulary_is_deterministic_and_unknowns_map_to_unk():
    assert WordTokenizer(CORPUS).encode("council") == WordTokenizer(reversed(CORPUS)).encode("council")
    tok = WordTokenizer(CORPUS)
    assert tok.encode("zebra") == [UNK]
    assert tok.decode([EOS]) == "" and tok.decode([EOS], skip_special_tokens=False) == "</s>"
