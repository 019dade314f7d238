"""The web dashboard at /ui: server-rendered pages (Jinja2 templates, no
JavaScript, no CDN) over the same store reads and the same authorization as
the API. Signing in opens a server-side session (homeo.api.sessions) whose
secret goes in an HttpOnly, SameSite=Strict cookie; every form that changes something also carries a
token derived from it (`render.csrf_token`), so another site cannot post it."""
