//! The channels a customer reaches the business through: Twilio voice calls and WhatsApp.

/// The live-call registry the ops view reads (issue 12).
pub mod live;
pub mod signature;
pub mod twilio;
pub mod whatsapp;
