"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('store_id', sa.String(length=64), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('clip_ids', sa.JSON(), nullable=False),
    sa.Column('source_start_s', sa.Float(), nullable=True),
    sa.Column('source_end_s', sa.Float(), nullable=True),
    sa.Column('evidence_path', sa.Text(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('verdict', sa.String(length=32), nullable=True),
    sa.Column('acknowledged_by', sa.String(length=200), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('alert_id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_store_time', ['store_id', 'raised_at'], unique=False)

    op.create_table('camera_health_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('store_id', sa.String(length=64), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('reconnects', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('camera_health_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_camera_health_events_camera_id'), ['camera_id'], unique=False)

    op.create_table('clip_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('clip_id', sa.String(length=64), nullable=False),
    sa.Column('store_id', sa.String(length=64), nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_start_s', sa.Float(), nullable=False),
    sa.Column('source_end_s', sa.Float(), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('suspicious', sa.Boolean(), nullable=False),
    sa.Column('model_version', sa.String(length=100), nullable=False),
    sa.Column('evidence_path', sa.Text(), nullable=True),
    sa.Column('inferred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('clip_id')
    )
    with op.batch_alter_table('clip_results', schema=None) as batch_op:
        batch_op.create_index('ix_clip_results_camera_time', ['camera_id', 'captured_at'], unique=False)
        batch_op.create_index('ix_clip_results_store_time', ['store_id', 'captured_at'], unique=False)

    op.create_table('stores',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('cameras',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('store_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameras_store_id'), ['store_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_store_id'))

    op.drop_table('cameras')
    op.drop_table('stores')
    with op.batch_alter_table('clip_results', schema=None) as batch_op:
        batch_op.drop_index('ix_clip_results_store_time')
        batch_op.drop_index('ix_clip_results_camera_time')

    op.drop_table('clip_results')
    with op.batch_alter_table('camera_health_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_camera_health_events_camera_id'))

    op.drop_table('camera_health_events')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_store_time')

    op.drop_table('alerts')

