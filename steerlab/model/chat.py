"""Conversation formatting with character spans, so every token can be given its speaker.

Models with a chat template use it. Base models without one (the embedded Gemma 3 270M) get a plain
transcript, ``User: ...\\n\\nAssistant: ...``, which gives sensible replies from a base model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from steerlab.core.errors import SteerlabError
from steerlab.model.family import adds_bos, has_template

ROLES = ("system", "user", "assistant")
PLAIN_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class Turn:
    role: str
    start: int  # character span of the turn's content in the formatted text
    end: int


@dataclass(frozen=True)
class ChatText:
    text: str  # the formatted conversation
    turns: tuple[Turn, ...]
    template: str  # "plain", "chat_template", or "raw" (a prompt continued as it is)


def check_messages(messages: object) -> list[dict[str, str]]:
    """Validate a list of {role, content}; errors say what is wrong and where."""
    if not isinstance(messages, list) or not messages:
        raise SteerlabError('a conversation must be a non-empty JSON list of {"role", "content"} objects')
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise SteerlabError(f"message {i} must be an object with 'role' and 'content'")
        role, content = msg["role"], msg["content"]
        if role not in ROLES:
            raise SteerlabError(f"message {i} has unknown role {role!r}: use one of {', '.join(ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise SteerlabError(f"message {i} ({role}) has empty content: every turn needs text")
        out.append({"role": role, "content": content.strip()})
    return out


def format_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, str]],
    add_generation_prompt: bool,
) -> ChatText:
    """Format ``messages``; with ``add_generation_prompt`` the text ends where the reply begins."""
    msgs = check_messages(list(messages))
    if has_template(tokenizer):
        text = str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt))
        # The template may write BOS as text; a tokenizer that adds BOS itself would double it.
        if tokenizer.bos_token and text.startswith(tokenizer.bos_token) and adds_bos(tokenizer):
            text = text[len(tokenizer.bos_token) :]
        turns, cursor = [], 0
        for msg in msgs:
            start = text.find(msg["content"], cursor)
            if start < 0:
                raise SteerlabError("the chat template rewrote a message; cannot locate its tokens")
            cursor = start + len(msg["content"])
            turns.append(Turn(msg["role"], start, cursor))
        return ChatText(text, tuple(turns), "chat_template")
    parts, turns, pos = [], [], 0
    for msg in msgs:
        label = f"{PLAIN_LABELS[msg['role']]}: "
        start = pos + len(label)
        turns.append(Turn(msg["role"], start, start + len(msg["content"])))
        chunk = label + msg["content"] + "\n\n"
        parts.append(chunk)
        pos += len(chunk)
    text = "".join(parts)
    text = text + "Assistant:" if add_generation_prompt else text.rstrip("\n")
    return ChatText(text, tuple(turns), "plain")


def raw_chat(prompt: str) -> ChatText:
    """A prompt continued as it is: one user turn, no template."""
    return ChatText(prompt, (Turn("user", 0, len(prompt)),), "raw")


def prompt_chat(
    tokenizer: PreTrainedTokenizerBase, prompt: str, chat: bool, frame: Sequence[tuple[str, str]] = ()
) -> ChatText:
    """The text a generation starts from, with its turns: the raw prompt (one turn, no template), or
    a user turn awaiting the reply.

    ``frame``: (user, assistant) exchanges shown first, so a base model answers as an assistant
    instead of echoing the user. Only models without a chat template get it: an instruction-tuned
    model answers as an assistant on its own, and its template is how it was taught to.
    """
    if not prompt.strip():
        raise SteerlabError("empty prompt: give some text to continue")
    if not chat:
        return raw_chat(prompt)
    if has_template(tokenizer):
        frame = ()
    shown = [
        {"role": role, "content": text}
        for user, reply in frame
        for role, text in (("user", user), ("assistant", reply))
    ]
    return format_chat(tokenizer, [*shown, {"role": "user", "content": prompt}], add_generation_prompt=True)


def prompt_text(
    tokenizer: PreTrainedTokenizerBase, prompt: str, chat: bool, frame: Sequence[tuple[str, str]] = ()
) -> str:
    return prompt_chat(tokenizer, prompt, chat, frame).text


def content_positions(chats: Sequence[ChatText], offsets: torch.Tensor) -> torch.Tensor:
    """(batch, width) bool: the tokens inside a message's text, from their character ``offsets``
    (batch, width, 2). The rest (BOS, padding, role labels, the newlines and system prompt a template
    adds) are template markers, which edits never touch."""
    keep = torch.zeros(offsets.shape[:2], dtype=torch.bool)
    for row, chat in enumerate(chats):
        roles = token_roles(chat, [(int(a), int(b)) for a, b in offsets[row]])
        keep[row] = torch.tensor([role != "template" for role in roles])
    return keep


def last_user_flags(chat: ChatText, offsets: Sequence[Sequence[int]]) -> list[bool]:
    """Per token (character ``offsets``): inside the chat's last user message, the one a reply answers."""
    turn = [t for t in chat.turns if t.role == "user"][-1]
    return [b > a and a < turn.end and b > turn.start for a, b in offsets]


def last_user_positions(chats: Sequence[ChatText], offsets: torch.Tensor) -> torch.Tensor:
    """(batch, width) bool: :func:`last_user_flags` of each row."""
    return torch.tensor([last_user_flags(chat, offsets[row].tolist()) for row, chat in enumerate(chats)])


def token_roles(chat: ChatText, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Role of each token from its character offsets: the turn it falls in, else ``template``."""
    roles = []
    for start, end in offsets:
        role = "template"
        if end > start:
            for turn in chat.turns:
                if start < turn.end and end > turn.start:
                    role = turn.role
                    break
        roles.append(role)
    return roles
