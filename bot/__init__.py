"""resell-scan-bot: a Telegram bot for Resell Scan's product analysis."""

__version__ = "0.1.0"
