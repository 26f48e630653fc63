"""Telegram side: handlers, texts (en/de), and pure rendering of messages and keyboards."""
