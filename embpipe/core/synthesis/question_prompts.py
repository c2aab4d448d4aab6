"""What the teacher is asked for a chunk's questions, and how its reply is read: styles, prompts, JSON schemas,
validation.

Three styles: ``terms`` (questions in the passage's own terms), ``user`` (a symptom or goal in a user's everyday
words, a how-to, a short search on a code or name, as real support searches read) and ``post`` (a support-forum
post: a one-line title, then a few first-person sentences with the product and version, what the user did and
what they see, as the questions of a support forum such as techqa's read). A post's title and body are separate
fields of the reply's schema, so even a small teacher keeps the shape; the training query is the title, then
the body. Replies are validated (``parse_questions``): each question is a string of 12–300 characters (ending in
``?`` in the ``terms`` style; a post 40–1,200) that does not lean on unseen context ("the passage", "this
error", "mentioned"); copies of the passage's first sentence, and of the prompt's worked example, are refused,
and duplicates removed.

Example:
    >>> parse_questions({"questions": ["How do I fix error E217?", "x"]}, 2)
    ['How do I fix error E217?']
    >>> parse_questions({"posts": [{"title": "Why does replication stall?", "body": "We run KV 5.1 and see E217."}]},
    ...                 1, style="post")
    ['Why does replication stall? We run KV 5.1 and see E217.']
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from embpipe.llm.teacher import TeacherOutputError

QuestionStyle = Literal["terms", "user", "post"]
QUESTION_STYLES: tuple[str, ...] = get_args(QuestionStyle)
PROMPT_VERSIONS: dict[str, str] = {
    "terms": "single-chunk-questions-v2",
    "user": "single-chunk-questions-user-v1",
    "post": "single-chunk-posts-v1",
}
RULES = """Rules:
- Each question must make sense to someone who has NOT seen the passage. Never refer to "the passage",
  "the message", "the text", "this error" or "mentioned"."""
SYSTEM_PROMPTS: dict[str, str] = {
    "terms": f"""You write realistic search queries for training a document retrieval system.
Given one passage from a technical document, write questions that a user with a real problem would type
into a search box, and that this passage answers.
{RULES}
- Use the specific terms of the passage: product and model names, error or alert codes, commands,
  settings, symptoms.
- Ask about different facts in each question, and do not copy sentences from the passage.
Example. Passage: "Error 53300 'too many connections' appears when the server reaches max_connections.
Raise the limit in postgresql.conf or put a connection pooler such as PgBouncer in front."
Reply: {{"questions": ["How do I fix PostgreSQL error 53300 too many connections?",
"Where is max_connections configured in PostgreSQL?"]}}
Reply with JSON only: {{"questions": ["...", "..."]}}.""",
    "user": f"""You write the searches that real users type when they need one passage of a technical document.
The users have not read the passage: they describe what they see or what they want, in their own everyday words.
Given the passage, write searches that it answers, each in a different style:
- a problem report: the symptom the user sees, in plain words, without naming its cause;
- a goal: what the user wants to get done ("how do I ...");
- a short search with the exact code, product, command or setting name, when the passage has one.
{RULES}
- Do not copy phrases from the passage, apart from names and codes.
Example. Passage: "Error 53300 'too many connections' appears when the server reaches max_connections.
Raise the limit in postgresql.conf or put a connection pooler such as PgBouncer in front."
Reply: {{"questions": ["our app cannot open new database connections at peak hours, logins are refused",
"how do I let more clients connect to postgres at the same time", "postgres error 53300"]}}
Reply with JSON only: {{"questions": ["...", "..."]}}.""",
    "post": """You write the posts that users of a technical product put on a support forum when they have the
problem that a passage of a support document solves. The users have NOT read the passage: they describe their
own situation. Each post has:
- "title": a one-line question a user would ask, in their own words;
- "body": two or three sentences in the first person: the product and version they run, what they were
  doing, and what they see (the exact error message or code when the passage shows one).
Never refer to "the document", "the passage" or "this error". Do not copy sentences from the passage.
Example. Passage: "Error 53300 'too many connections' appears when the server reaches max_connections.
Raise the limit in postgresql.conf or put a connection pooler such as PgBouncer in front."
Reply: {"posts": [{"title": "Why are new database connections refused at peak hours?",
"body": "We run PostgreSQL 13 behind our web app. Every day around noon logins start failing and the log shows
FATAL: sorry, too many clients already (53300). Restarting the app helps for a while."}]}
Reply with JSON only: {"posts": [{"title": "...", "body": "..."}]}.""",
}
REPLY_TOKENS_PER_QUESTION: dict[str, int] = {"terms": 64, "user": 64, "post": 150}

# Questions that lean on context the searcher does not have are useless as training queries.
CONTEXT_REFERENCES = re.compile(
    r"\b(the|this|that) (passage|message|text|document|article|section|context|scenario|alert)\b"
    r"|\b(this|these) (issue|problem|error|warning|vulnerabilit(y|ies)|option|fix|implementation|report|procedure"
    r"|technote|note|behaviou?r|change|update|setting|feature|tool|steps?)s?\b"
    r"|\bmentioned\b|\bdescribed (above|here|in)\b",
    re.IGNORECASE,
)
# A post's body may say "this error" of the error it quotes itself; it may not point at the unseen document.
DOCUMENT_REFERENCES = re.compile(r"\b(the|this) (passage|document|article|technote)\b|\bmentioned\b", re.IGNORECASE)
# The prompts' worked example is about PostgreSQL; a small teacher sometimes pastes its error into an unrelated
# question. A question that names one of these without its passage naming it is refused.
EXAMPLE_MARKERS: tuple[str, ...] = ("53300", "too many clients", "too many connections", "max_connections", "pgbouncer")
LENGTHS: dict[str, tuple[int, int]] = {"terms": (12, 300), "user": (12, 300), "post": (40, 1_200)}


def question_schema(count: int, style: QuestionStyle = "terms") -> dict:
    """JSON schema of a reply with up to ``count`` questions (posts: objects with a title and a body)."""
    if style == "post":
        field = {"type": "string"}
        item = {"type": "object", "properties": {"title": field, "body": field}, "required": ["title", "body"]}
        return {
            "type": "object",
            "properties": {"posts": {"type": "array", "items": item, "minItems": 1, "maxItems": count}},
            "required": ["posts"],
        }
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": count}},
        "required": ["questions"],
    }


def reply_tokens(count: int, style: QuestionStyle = "terms") -> int:
    """The most tokens a reply with ``count`` questions in ``style`` may take."""
    return REPLY_TOKENS_PER_QUESTION[style] * count + 32


def question_messages(title: str, passage: str, count: int, style: QuestionStyle = "terms") -> list[dict]:
    """Chat messages asking for ``count`` questions in ``style`` about ``passage`` from the document ``title``."""
    if style == "post":
        ask = f"Write {count} different posts by users whose problem this passage solves."
    else:
        ask = f"Write {count} different questions answered by this passage."
    user = f"Document: {title}\n{ask}\nPASSAGE: {passage}"
    return [{"role": "system", "content": SYSTEM_PROMPTS[style]}, {"role": "user", "content": user}]


def post_text(item: object) -> str | None:
    """A post's query text (title, then body), or ``None`` when the item is not a post that stands alone."""
    if not isinstance(item, dict) or not isinstance(item.get("title"), str) or not isinstance(item.get("body"), str):
        return None
    title, body = " ".join(item["title"].split()), " ".join(item["body"].split())
    if not title or CONTEXT_REFERENCES.search(title) or DOCUMENT_REFERENCES.search(body):
        return None
    return f"{title} {body}"


def reply_texts(reply: dict, style: QuestionStyle) -> list[str | None]:
    """The candidate query texts of a decoded reply, ``None`` for an item of the wrong kind."""
    key = "posts" if style == "post" else "questions"
    raw = reply.get(key)
    if not isinstance(raw, list):
        raise TeacherOutputError(f"reply has no '{key}' list")
    if style == "post":
        return [post_text(item) for item in raw]
    return [" ".join(item.split()) if isinstance(item, str) else None for item in raw]


def parse_questions(reply: dict, count: int, passage: str = "", style: QuestionStyle = "terms") -> list[str]:
    """Valid, distinct questions from a decoded reply; ``TeacherOutputError`` when none is usable."""
    lead = passage.strip()[:80].lower()
    borrowed = [m for m in EXAMPLE_MARKERS if m not in passage.lower()]
    shortest, longest = LENGTHS[style]
    questions: list[str] = []
    for text in reply_texts(reply, style):
        if text is None or not shortest <= len(text) <= longest:
            continue
        asks = text.endswith("?") or style != "terms"  # a user's search or post need not end with a question
        if not asks or (style != "post" and CONTEXT_REFERENCES.search(text)):
            continue
        if (lead and text.lower().startswith(lead[:60])) or any(m in text.lower() for m in borrowed):
            continue
        if text.lower() not in {q.lower() for q in questions}:
            questions.append(text)
    if not questions:
        raise TeacherOutputError(f"no usable question among {reply!r:.200}")
    return questions[:count]
