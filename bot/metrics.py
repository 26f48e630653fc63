"""Prometheus metrics, in a registry per bot instance (tests run several bots in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submissions = Gauge(
            "resellscan_bot_submissions", "Submissions by state", ["state"], registry=self.registry
        )
        self.api_calls = Counter(
            "resellscan_bot_api_calls",
            "Resell Scan calls by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.paid_calls = Counter(
            "resellscan_bot_paid_calls",
            "Paid POSTs (createAndAnalyze, analyze) by endpoint and outcome: accepted, refused"
            " (not processed), unknown (the answer was lost), capped (not sent: the decision"
            " had its two paid calls)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "resellscan_bot_webhooks",
            "Webhook deliveries by verification result",
            ["result"],
            registry=self.registry,
        )
        self.unknown_events = Gauge(
            "resellscan_bot_webhook_events_unknown",
            "Webhook events kept for batches the bot does not know (e.g. from the dashboard)",
            registry=self.registry,
        )
        self.pruned_events = Counter(
            "resellscan_bot_webhook_events_unknown_pruned",
            "Webhook events for unknown batches forgotten after WEBHOOK_UNKNOWN_RETENTION_SECONDS",
            registry=self.registry,
        )
        self.telegram_sends = Counter(
            "resellscan_bot_telegram_sends",
            "Telegram sends by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.completion_to_reply = Histogram(
            "resellscan_bot_completion_to_reply_seconds",
            "Time from learning of a completion to the results reply",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )

    def observe_api(self, endpoint: str, outcome: str) -> None:
        self.api_calls.labels(endpoint=endpoint, outcome=outcome).inc()

    def set_states(self, counts: dict[str, int], states: list[str]) -> None:
        for state in states:
            self.submissions.labels(state=state).set(counts.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
