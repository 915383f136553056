"""Chat: the reply backends (a registry by name), the response selector that scores replies,
and the checks a reply passes before it is sent. Arrows: into the floor, ``engine.training``
and ``engine.emotion``, never up."""

from engine import lazy_exports

EXPORTS = {"ReplyBackend": "backends", "ReplyError": "backends", "CausalLMReply": "backends",
           "OpenAIReply": "backends", "RetrievalReply": "backends", "ResponseSelector": "responses"}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
