"""The response cache and call journal: SQLite on one machine (:mod:`.sqlite`), Postgres for a team
(:mod:`.postgres`), chosen by the target (:mod:`.backends`); what they hold (:mod:`.records`) and the
books of budgets and shared rate buckets kept in the same database (:mod:`.ledger`). May import
:mod:`~personahub_dagster.core.config`."""
