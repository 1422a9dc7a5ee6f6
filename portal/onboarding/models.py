from sqlalchemy import Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel


class DashboardCredential(SQLModel, table=True):
    """A test credential the dashboard created to send a test SMS from the page. Its token was
    never shown to anyone: the dashboard sends on the server. The account's newest one that is
    not revoked is reused."""

    __tablename__ = "dashboard_credentials"

    credential_id: int = Field(sa_column=Column(Integer, ForeignKey("api_credentials.id"), primary_key=True))
    account_id: int = Field(sa_column=Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True))
