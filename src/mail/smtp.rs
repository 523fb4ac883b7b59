//! Mail through an SMTP server of passgate's own (`mail.transport = "smtp"`).
