//! The channels a customer reaches the business through: Twilio voice calls and WhatsApp.

pub mod signature;
pub mod twilio;
pub mod whatsapp;
