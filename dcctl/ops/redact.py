"""Hide the secrets a hook command may carry wherever the command is shown (the plan, the journal,
the reports); the command that runs is never changed.

The rule, documented in config/dcctl.example.yaml:
- the value of an argument or variable whose name contains token, password/passwd, secret,
  api_key/apikey, private_key, credential or auth, written NAME=VALUE, NAME: VALUE or
  --NAME VALUE (e.g. --token=abc, PGPASSWORD=abc, MY_API_TOKEN=abc, -H 'X-Auth-Token: abc');
- the password of a URL (scheme://user:PASSWORD@host), and the credentials after Bearer or Basic;
- every match of the hook's own `mask` regular expressions.
Each hidden part becomes ***.
"""
from __future__ import annotations

import re
from typing import Iterable

HIDDEN = "***"

_NAME = r"[A-Za-z0-9_.-]*(?:token|passw(?:or)?d|secret|api[_-]?key|private[_-]?key|credential|auth)[A-Za-z0-9_.-]*"
_VALUE = r"""(?:"[^"]*"|'[^']*'|[^\s'";|&]+)"""

_RULES = (
    # NAME=VALUE, NAME: VALUE (an HTTP header), --NAME=VALUE
    re.compile(rf"(?i)(?P<keep>(?<![A-Za-z0-9_.-]){_NAME}(?:=|:[ \t]*))(?!(?:bearer|basic)[ \t])(?P<secret>{_VALUE})"),
    # --NAME VALUE, -NAME VALUE
    re.compile(rf"(?i)(?P<keep>(?<!\S)--?{_NAME}[ \t]+)(?P<secret>(?!-){_VALUE})"),
    # scheme://user:PASSWORD@host
    re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]+:)(?P<secret>[^\s@/'\"]+)(?=@)"),
    # Authorization: Bearer TOKEN / Basic CREDENTIALS
    re.compile(r"(?i)(?P<keep>\b(?:bearer|basic)[ \t]+)(?P<secret>[A-Za-z0-9._~+/=-]+)"),
)


def mask_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with its secrets replaced by ***.

    >>> mask_secrets("curl -H 'Authorization: Bearer abc.def' https://u:pw@vip/api?x=1 --token=s3 GH_TOKEN=t9 ok")
    "curl -H 'Authorization: Bearer ***' https://u:***@vip/api?x=1 --token=*** GH_TOKEN=*** ok"
    >>> mask_secrets("notify --password hunter2 --to ops", extra=[r"ops"])
    'notify --password *** --to ***'
    """
    for rule in _RULES:
        text = rule.sub(lambda m: m.group("keep") + HIDDEN, text)
    for pattern in extra:
        text = re.sub(pattern, HIDDEN, text)
    return text
