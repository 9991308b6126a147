"""llama.cpp itself reads our GGUF export of the default model and answers greedily what transformers answers.

Slow (exports 270 MB) and skipped unless `llama-cpp-python` is installed: it has no wheel on PyPI, so it must
build from source (`pip install llama-cpp-python`, several minutes with cmake and a C++ compiler).
"""
import pytest

pytestmark = pytest.mark.slow


def test_llama_cpp_generates_the_transformers_answer(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.export.gguf import export_gguf
    from tunelab.models import resolve_model

    source = resolve_model("smollm2-135m-instruct", None).location
    path = export_gguf(source, tmp_path / "smol.gguf", "f32").path
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    expected = tokenizer.decode(model.generate(**ids, max_new_tokens=16, do_sample=False)[0, ids["input_ids"].shape[1]:],
                                skip_special_tokens=True)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert tokens == ids["input_ids"][0].tolist()  # llama.cpp tokenizes the prompt as transformers does
    answer = llm.create_completion(tokens, max_tokens=16, temperature=0)["choices"][0]["text"]
    assert answer.strip() == expected.strip()


@pytest.mark.parametrize("kind", ["qwen2", "gemma2"])
def test_llama_cpp_computes_what_transformers_does_for_other_families(kind, tiny_tokenizer, tmp_path):
    """Beyond Llama: llama.cpp itself (not only transformers' reader) gets the logits of tiny Qwen2 (biases) and
    Gemma 2 (1 + w norms, soft-capping, sliding window) models from our f32 export."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np
    import torch
    from family_models import tiny_family_model
    from transformers import AutoModelForCausalLM

    from tunelab.export.gguf import export_gguf

    folder = tiny_family_model(kind, tiny_tokenizer, tmp_path / kind)
    path = export_gguf(str(folder), tmp_path / f"{kind}.gguf", "f32").path
    tokens = [5, 17, 42, 8, 99, 3, 64, 21]
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)(torch.tensor([tokens])).logits[0]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False)
    llm.eval(tokens)
    got = np.asarray(llm.scores[:len(tokens)])
    scale = expected.abs().max().item()
    assert np.abs(got - expected.numpy()).max() < 1e-3 * scale
