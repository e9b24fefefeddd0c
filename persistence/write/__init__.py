"""The write side of one transaction: the journal append, the participants' tables, the catalog,
request keys, and the group commit that runs many such transactions as one."""
