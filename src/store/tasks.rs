//! Store verbs for tasks.
