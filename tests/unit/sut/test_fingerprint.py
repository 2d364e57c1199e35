import json
import struct

from harness.sut.fingerprint import model_fingerprint


def _safetensors(path, payload: bytes, shape=(2,)):
    header = json.dumps({"w": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, len(payload)]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)


def test_fingerprint_follows_config_shapes_and_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    _safetensors(tmp_path / "model.safetensors", b"\x00" * 8)
    first = model_fingerprint(tmp_path)
    assert first == model_fingerprint(tmp_path) and len(first) == 64
    _safetensors(tmp_path / "model.safetensors", b"\x01" + b"\x00" * 7)
    retrained = model_fingerprint(tmp_path)
    _safetensors(tmp_path / "model.safetensors", b"\x01" + b"\x00" * 7, shape=(1, 2))
    reshaped = model_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"hidden_size": 16}')
    assert len({first, retrained, reshaped, model_fingerprint(tmp_path)}) == 4
