"""Onboarding: the dashboard's "send a test SMS to my phone" and the getting-started checklist,
which ticks itself from what really happened (nothing is stored for the ticks)."""
