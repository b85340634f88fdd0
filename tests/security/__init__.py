"""Security suites: personal data and secrets kept out of logs, queues and error reports
(PII canaries), and hostile templates refused at save time or harmless at render."""
