"""Every table, imported in one place for Alembic and the tests."""

from sqlmodel import SQLModel

from portal.accounts.models import (  # noqa: F401
    Account,
    Invitation,
    LoginThrottle,
    Membership,
    OneTimeToken,
    PhoneChallenge,
    User,
    UserSession,
)
from portal.billing.models import (  # noqa: F401
    BillingProfile,
    DocumentCounter,
    Invoice,
    InvoiceRendition,
    PaymentRefund,
    PurchaseIntent,
    Purchase,
    SandboxPayment,
    WebhookEvent,
)
from portal.alerts.models import (  # noqa: F401
    AlertAddress, AlertMark, AlertMember, AlertOptOut, AlertSettings, Delivery, Notice,
)
from portal.audit import AuditEvent  # noqa: F401
from portal.credentials.models import CallbackSecret, Credential, CredentialSecret  # noqa: F401
from portal.messaging.api_models import ApiIdempotency, Call, CallbackAttempt, Message, Price  # noqa: F401
from portal.messaging.spend import SpendCounter  # noqa: F401
from portal.ledger.models import BalanceThreshold, CreditState, Entry, Hold, HoldPart, Lot, Transaction  # noqa: F401
from portal.mail import DevMail  # noqa: F401
from portal.onboarding.models import DashboardCredential  # noqa: F401
from portal.messaging.models import TestInboxMessage  # noqa: F401
from portal.otp.models import OtpBlocked, OtpCode, OtpCredentialSite, OtpSite, OtpTally  # noqa: F401
from portal.outbox import OutboxMessage  # noqa: F401
from portal.usage.models import UsageDay  # noqa: F401
from portal.postpay.models import Application, Contract, InvoiceLine, Payment, PostpayInvoice  # noqa: F401

metadata = SQLModel.metadata
