/* The part of libfuse3 that hpkvd binds with bindgen (see build.rs). */
#define FUSE_USE_VERSION 31
#include <cuse_lowlevel.h>
