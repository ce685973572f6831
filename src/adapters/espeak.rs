//! espeak-ng TTS provider (in progress).
