"""searches: hyperparameter searches whose candidates are fit jobs

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'searches',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('family', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=256), nullable=False),
        sa.Column('alias', sa.String(length=64), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('candidates', sa.String(length=64), nullable=False),
        sa.Column('result_key', sa.String(length=64), nullable=True),
        sa.Column('result_version', sa.Integer(), nullable=True),
        sa.Column('best_version', sa.Integer(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('actor', sa.String(length=128), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_searches_family'), ['family'], unique=False)
        batch_op.create_index(batch_op.f('ix_searches_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_searches_state'))
        batch_op.drop_index(batch_op.f('ix_searches_family'))
    op.drop_table('searches')
