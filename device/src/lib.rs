//! Door unit library (filled by the door-unit issue).
