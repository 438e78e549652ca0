"""evidence and feedback

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('missed_thefts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('store_id', sa.String(length=64), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('marked_by', sa.String(length=200), nullable=False),
    sa.Column('marked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('video_path', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('missed_thefts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_missed_thefts_store_id'), ['store_id'], unique=False)

    op.create_table('report_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rendered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('path', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('scope', 'period_start', 'period_end', name='uq_report_runs_period')
    )
    # Plain ADD COLUMN (not a batch table copy): SQLite can add these in place, and copying `alerts` would
    # trip the foreign keys of alert_events and alert_deliveries that point at it.
    op.add_column('alerts', sa.Column('evidence_hold', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('alerts', sa.Column('hold_by', sa.String(length=200), nullable=True))
    op.add_column('alerts', sa.Column('hold_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('alerts', sa.Column('evidence_deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('alerts', sa.Column('evidence_video_settled_at', sa.DateTime(timezone=True), nullable=True))
    # Alerts from before evidence video: none will ever have one, so the video maker does not revisit them.
    op.execute("UPDATE alerts SET evidence_video_settled_at = raised_at")
    op.add_column('clip_results', sa.Column('shadow_probability', sa.Float(), nullable=True))
    op.add_column('clip_results', sa.Column('shadow_model_version', sa.String(length=100), nullable=True))


def _drop_columns(table: str, *columns: str) -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35+): a batch table copy of `alerts` would trip the
    # foreign keys of alert_events and alert_deliveries that point at it.
    for column in columns:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def downgrade() -> None:
    _drop_columns('clip_results', 'shadow_model_version', 'shadow_probability')
    _drop_columns('alerts', 'evidence_video_settled_at', 'evidence_deleted_at', 'hold_at', 'hold_by', 'evidence_hold')
    op.drop_table('report_runs')
    op.drop_index('ix_missed_thefts_store_id', table_name='missed_thefts')
    op.drop_table('missed_thefts')
