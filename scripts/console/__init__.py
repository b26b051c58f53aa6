"""The management console: a read-only web application over the project's plans, stacks and run
store, for operators (every client) and client users (their own client only), with two-factor
sign-in. ``drctl console serve`` runs it; ``drctl console user add`` creates its users.

Modules: ``users`` (the users file, Argon2 hashes, TOTP secrets), ``signin`` (password, TOTP,
replay refusal, rate limit and lockout), ``sessions`` (signed cookies, idle timeout, CSRF),
``audit`` (the JSON-lines audit log), ``clients`` (what a page shows, from the plan, the stack and
the run store), ``app`` (the Starlette application and its access rule), ``pages`` (the page
handlers), ``screenshots`` (the documentation's screenshots, by headless Chromium).
"""
