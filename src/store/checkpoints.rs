//! Store verbs for checkpoints, decisions and transcripts.
