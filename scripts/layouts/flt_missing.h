/*
 * The two Filter Manager structures that neither header set defines: mingw-w64 has no fltkernel.h,
 * and Wine's ddk/fltkernel.h only forward-declares FLT_RELATED_OBJECTS and lacks
 * FLT_FILE_NAME_INFORMATION. Written from the member lists Microsoft documents for fltkernel.h
 * (learn.microsoft.com, "FLT_RELATED_OBJECTS structure" and "FLT_FILE_NAME_INFORMATION structure");
 * every member type comes from mingw-w64's ntifs.h, so the C compiler still decides the layout.
 */
#ifndef FSENSE_FLT_MISSING_H
#define FSENSE_FLT_MISSING_H

typedef struct _FLT_VOLUME *PFLT_VOLUME;
typedef USHORT FLT_FILE_NAME_PARSED_FLAGS;

struct _FLT_RELATED_OBJECTS {
    USHORT const Size;
    USHORT const TransactionContext;
    PFLT_FILTER const Filter;
    PFLT_VOLUME const Volume;
    PFLT_INSTANCE const Instance;
    PFILE_OBJECT const FileObject;
    PKTRANSACTION const Transaction;
};
typedef struct _FLT_RELATED_OBJECTS FLT_RELATED_OBJECTS;

typedef struct _FLT_FILE_NAME_INFORMATION {
    USHORT Size;
    FLT_FILE_NAME_PARSED_FLAGS NamesParsed;
    FLT_FILE_NAME_OPTIONS Format;
    UNICODE_STRING Name;
    UNICODE_STRING Volume;
    UNICODE_STRING Share;
    UNICODE_STRING Extension;
    UNICODE_STRING Stream;
    UNICODE_STRING FinalComponent;
    UNICODE_STRING ParentDir;
} FLT_FILE_NAME_INFORMATION;

#endif
