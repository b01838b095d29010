"""Users and what belongs to them: profiles, passwords and their policy, second factors,
one-time mail links and login sessions."""
