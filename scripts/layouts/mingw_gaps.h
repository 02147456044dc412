/*
 * Two pointer types that Wine's ddk/fltkernel.h (and flt_missing.h) use but mingw-w64's ntifs.h
 * does not declare; Wine takes them from its own ntifs.h. Only pointers to them occur, so declaring
 * the pointee as an incomplete struct cannot change any layout.
 */
#ifndef FSENSE_MINGW_GAPS_H
#define FSENSE_MINGW_GAPS_H

typedef struct _FS_FILTER_SECTION_SYNC_OUTPUT *PFS_FILTER_SECTION_SYNC_OUTPUT;
typedef struct _KTRANSACTION *PKTRANSACTION;

#endif
