"""SQLAlchemy adapters: the journal, the participants' tables, the read model, the transaction runner."""
