"""A tiny qwen2 model in GGUF, made at test time: the architecture deepseek-r1:7b has, at a
size Ollama loads in a fraction of a second on a CPU.

    .venv/bin/python tests/tiny_gguf.py OUT.gguf      # writes it, prints its sha256

2 blocks, embedding 64, 4 attention heads sharing 2 KV heads, feed-forward 128, F32 weights
drawn from a fixed seed (the same bytes every time), q/k/v biases as qwen2 has. The tokenizer
is a real byte-level BPE (`gpt2`, pre-tokenizer `qwen2`): the 256 GPT-2 byte tokens, a few
merges, and Qwen's control tokens with its ChatML chat template, so Ollama picks its own
`chatml` template and stops at `<|im_end|>`.

The weights are random, so the text is noise; what the tests need is that it is text, and
that there is a lot of it: the output rows of the control tokens are zero, so greedy decoding
never ends early on an end-of-text token (any other token's logit beats 0).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import gguf
import numpy as np

ARCH = "qwen2"
BLOCKS = 2
EMBED = 64
HEADS = 4
KV_HEADS = 2
FEED_FORWARD = 128
CONTEXT = 2048
SEED = 20240
MERGES = ("Ġ t", "h e", "Ġt he", "Ġ a", "i n", "e r", "o n", "r e", "Ġ s", "Ġ b")
CONTROL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# The Qwen2 ChatML template, as Qwen ships it (one of Ollama's known `chatml` templates).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def byte_tokens() -> list[str]:
    """GPT-2's printable stand-in for each byte 0..255 (its bytes_to_unicode), in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def vocabulary() -> tuple[list[str], list[int]]:
    tokens = byte_tokens()
    tokens += ["".join(m.split(" ")) for m in MERGES]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    tokens += CONTROL
    types += [gguf.TokenType.CONTROL] * len(CONTROL)
    return tokens, [int(t) for t in types]


def write(path: Path) -> str:
    """Writes the model to path; returns its sha256 (the same for every call)."""
    tokens, types = vocabulary()
    vocab = len(tokens)
    head_dim = EMBED // HEADS
    rng = np.random.default_rng(SEED)

    def weight(*shape: int) -> np.ndarray:
        # numpy shape (rows, cols) is GGUF's ne = [cols, rows]: (out, in) for a projection.
        return rng.normal(0.0, 0.5, size=shape).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_name("bakery tiny qwen2 (random weights, for tests)")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(BLOCKS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(list(MERGES))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", weight(vocab, EMBED))
    for i in range(BLOCKS):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones(EMBED))
        writer.add_tensor(f"{blk}.attn_q.weight", weight(HEADS * head_dim, EMBED))
        writer.add_tensor(f"{blk}.attn_q.bias", weight(HEADS * head_dim))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(f"{blk}.attn_k.bias", weight(KV_HEADS * head_dim))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(KV_HEADS * head_dim, EMBED))
        writer.add_tensor(f"{blk}.attn_v.bias", weight(KV_HEADS * head_dim))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(EMBED, HEADS * head_dim))
        writer.add_tensor(f"{blk}.ffn_norm.weight", ones(EMBED))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(FEED_FORWARD, EMBED))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(EMBED, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", ones(EMBED))
    output = weight(vocab, EMBED)
    output[vocab - len(CONTROL) :] = 0.0  # never the likeliest token: generation runs its length
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_gguf.py OUT.gguf")
    print(write(Path(sys.argv[1])))
