"""Conversation formatting with character spans, so every token can be given its speaker.

Models with a chat template use it. Base models without one (the embedded Gemma 3 270M) get a plain
transcript, ``User: ...\\n\\nAssistant: ...``, which gives sensible replies from a base model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from .errors import SteerlabError

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
    template: str  # "plain" or "chat_template"


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


def has_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[dict[str, str]],
    add_generation_prompt: bool,
) -> ChatText:
    """Format ``messages``; with ``add_generation_prompt`` the text ends where the reply begins."""
    msgs = check_messages(list(messages))
    if has_template(tokenizer):
        text = str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt))
        # The template may prepend BOS as text; tokenisation adds it again, so drop it here.
        if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
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


def prompt_text(
    tokenizer: PreTrainedTokenizerBase, prompt: str, chat: bool, frame: Sequence[tuple[str, str]] = ()
) -> str:
    """The text a generation starts from: the raw prompt, or a user turn awaiting the reply.

    ``frame``: (user, assistant) exchanges shown first, so a base model answers as an assistant
    instead of echoing the user (chat only).
    """
    if not prompt.strip():
        raise SteerlabError("empty prompt: give some text to continue")
    if not chat:
        return prompt
    shown = [
        {"role": role, "content": text}
        for user, reply in frame
        for role, text in (("user", user), ("assistant", reply))
    ]
    return format_chat(tokenizer, [*shown, {"role": "user", "content": prompt}], add_generation_prompt=True).text


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
