-- The dashboard's session key: every session cookie is signed with HMAC(api token, this key).
-- One row. Replacing the key (`herald sessions end`, `POST /api/sessions/end`) ends every session
-- of every Herald process at once, without changing the API token.
CREATE TABLE ui_session_key (
    one        BOOLEAN     PRIMARY KEY DEFAULT true CHECK (one),
    key        TEXT        NOT NULL,
    rotated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
