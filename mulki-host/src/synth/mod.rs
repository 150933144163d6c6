//! The built-in synthetic world: scenes, captions, task stream.
