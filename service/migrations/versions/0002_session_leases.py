"""session leases: long fits handed over by their consumer

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('lease_expires', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('handover', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('handover')
        batch_op.drop_column('lease_expires')
        batch_op.drop_column('lease_owner')
