//! Face pipeline (filled by the face-pipeline issue).
