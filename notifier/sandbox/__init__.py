"""The provider sandbox: local stand-ins for FCM, APNs, Twilio, SNS, SES and SMTP.

``make run`` and the test suites point the real provider SDKs at it. It records every accepted
message, can be told to fail the way the real providers fail, and never touches the database.
Start it with ``python manage.py provider_sandbox`` or, in-process, with
:class:`notifier.sandbox.server.SandboxServer`.
"""
